"""Verify an SM3withSM2 signature with gmssl, an SM2 implementation independent of ours.

usage: sm2_verify.py crl|cert FILE.der ISSUER.der
       sm2_verify.py ocsp RESPONSE.der          (the responder certificate inside is the key)
The signer ID is the GM/T 0009 default (1234567812345678), which gmssl always uses.
Exits 0 and prints OK when the signature verifies; prints FAIL and exits 1 otherwise.
"""
import sys

from gmssl import sm2

SM2_WITH_SM3 = bytes.fromhex("06082a811ccf55018375")


def tlv(b, i):
    """(tag, start of content, end of element) of the element at offset i."""
    tag, length, head = b[i], b[i + 1], 2
    if length & 0x80:
        n = length & 0x7F
        length, head = int.from_bytes(b[i + 2:i + 2 + n], "big"), 2 + n
    return tag, i + head, i + head + length


def children(b, start, end):
    out, i = [], start
    while i < end:
        tag, c, e = tlv(b, i)
        out.append((tag, i, c, e))
        i = e
    return out


def signed_parts(der):
    """(to-be-signed bytes, algorithm bytes, signature bytes) of a SIGNED{...} structure."""
    _, c, e = tlv(der, 0)
    (t0, s0, _, e0), (_, s1, _, e1), (t2, _, c2, e2) = children(der, c, e)[:3]
    assert t2 == 0x03, "no BIT STRING signature"
    return der[s0:e0], der[s1:e1], der[c2 + 1:e2]


def point_of_certificate(cert):
    _, c, e = tlv(cert, 0)
    _, _, tc, te = children(cert, c, e)[0]
    fields = children(cert, tc, te)
    if fields[0][0] == 0xA0:
        fields = fields[1:]
    _, _, sc, se = fields[5]  # serial, signature, issuer, validity, subject, spki
    _, _, bc, be = children(cert, sc, se)[1]
    return cert[bc + 1:be]


def verify(tbs, alg, sig, point):
    assert SM2_WITH_SM3 in alg, "not SM2-with-SM3"
    (_, _, rc, re), (_, _, sc, se) = children(sig, *tlv(sig, 0)[1:])
    r, s = int.from_bytes(sig[rc:re], "big"), int.from_bytes(sig[sc:se], "big")
    assert point[0] == 4 and len(point) == 65, "not an uncompressed SM2 point"
    crypt = sm2.CryptSM2(private_key=None, public_key=point[1:].hex())
    return crypt.verify_with_sm3("%064x%064x" % (r, s), tbs)


def main():
    kind, path = sys.argv[1], sys.argv[2]
    der = open(path, "rb").read()
    if kind == "ocsp":
        # OCSPResponse { status, [0] { ResponseBytes { oid, OCTET STRING BasicOCSPResponse } } }
        _, c, e = tlv(der, 0)
        _, _, rc, re = children(der, c, e)[1]
        _, bc, be = tlv(der, rc)
        _, _, oc, oe = children(der, bc, be)[1]
        basic = der[oc:oe]
        tbs, alg, sig = signed_parts(basic)
        _, c, e = tlv(basic, 0)
        _, _, cc, ce = children(basic, c, e)[3]  # [0] EXPLICIT certs
        _, sc, se = tlv(basic, cc)
        _, cs, _, cend = children(basic, sc, se)[0]
        point = point_of_certificate(basic[cs:cend])
    else:
        tbs, alg, sig = signed_parts(der)
        point = point_of_certificate(open(sys.argv[3], "rb").read())
    ok = verify(tbs, alg, sig, point)
    print("OK" if ok else "FAIL")
    sys.exit(0 if ok else 1)


main()
