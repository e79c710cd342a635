// PKCS#10 (RFC 2986) in the browser: an ECDSA P-256 key pair made by WebCrypto with a
// non-extractable private key, and a DER certification request signed by it. No library, no
// build step. Only the PEM CSR ever leaves the page.
"use strict";

const Pkcs10 = (() => {
  function len(n) {
    if (n < 0x80) return [n];
    const out = [];
    while (n > 0) { out.unshift(n & 0xff); n >>= 8; }
    return [0x80 | out.length, ...out];
  }
  function tlv(tag, bytes) {
    return Uint8Array.from([tag, ...len(bytes.length), ...bytes]);
  }
  function concat(parts) {
    const out = [];
    for (const p of parts) out.push(...p);
    return Uint8Array.from(out);
  }
  const seq = (...parts) => tlv(0x30, concat(parts));
  const set = (...parts) => tlv(0x31, concat(parts));
  function oid(text) {
    const arcs = text.split(".").map(Number);
    const out = [40 * arcs[0] + arcs[1]];
    for (const arc of arcs.slice(2)) {
      const b = [arc & 0x7f];
      let v = Math.floor(arc / 128);
      while (v > 0) { b.unshift(0x80 | (v & 0x7f)); v = Math.floor(v / 128); }
      out.push(...b);
    }
    return tlv(0x06, out);
  }
  function integer(bytes) {
    let b = Array.from(bytes);
    while (b.length > 1 && b[0] === 0 && b[1] < 0x80) b = b.slice(1);
    if (b[0] >= 0x80) b.unshift(0);
    return tlv(0x02, b);
  }
  const utf8 = (s) => tlv(0x0c, new TextEncoder().encode(s));

  // WebCrypto signs ECDSA as r || s; X.509 wants SEQUENCE { INTEGER r, INTEGER s }.
  function ecdsaDer(raw) {
    const half = raw.length / 2;
    return seq(integer(raw.slice(0, half)), integer(raw.slice(half)));
  }

  function pem(label, der) {
    let bin = "";
    for (const b of der) bin += String.fromCharCode(b);
    const b64 = btoa(bin).replace(/(.{64})/g, "$1\n");
    return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
  }

  // A fresh key pair (private key non-extractable) and a CSR naming `commonName`.
  async function generate(commonName) {
    const keys = await crypto.subtle.generateKey(
      { name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
    const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
    const subject = seq(set(seq(oid("2.5.4.3"), utf8(commonName))));
    const info = seq(integer([0]), subject, spki, Uint8Array.from([0xa0, 0x00]));
    const sig = new Uint8Array(await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" }, keys.privateKey, info));
    const algorithm = seq(oid("1.2.840.10045.4.3.2"));
    const bits = tlv(0x03, concat([[0], ecdsaDer(sig)]));
    return { keys, csr: pem("CERTIFICATE REQUEST", seq(info, algorithm, bits)),
             extractable: keys.privateKey.extractable };
  }

  return { generate };
})();
