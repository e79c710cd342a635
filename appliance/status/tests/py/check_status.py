#!/usr/bin/env python3
"""Independent checker for ca-status output, using pyca/cryptography.

  check_status.py ocsp RESP.DER SIGNER.PEM STATUS [REASON|-] [NONCE_HEX|-]
      successful response; every SingleResponse has STATUS (good|revoked|unknown) and, if
      given, REASON (cryptography's ReasonFlags name); signature verifies with SIGNER's key;
      the nonce extension equals NONCE_HEX (or is absent for '-').
  check_status.py ocsp-error RESP.DER STATUS_NAME
  check_status.py make-req CA.PEM EE.PEM NONCE_LEN OUT.DER
      writes an OCSP request (SHA-1 CertID) with a nonce of NONCE_LEN random octets.
  check_status.py crl CRL.DER CA.PEM COUNT
      CRL loads, is_signature_valid against CA, has COUNT entries; prints entries.
Exits non-zero with a message on any mismatch.
"""
import sys
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.hazmat.primitives.asymmetric import ec


def fail(msg):
    print("CHECK FAILED:", msg)
    sys.exit(1)


def load_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def check_ocsp(resp_path, signer_pem, status, reason, nonce_hex):
    resp = ocsp.load_der_ocsp_response(open(resp_path, "rb").read())
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        fail(f"status {resp.response_status}")
    signer = load_cert(signer_pem)
    signer.public_key().verify(
        resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm)
    )
    want = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
            "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status]
    n = 0
    for single in resp.responses:
        n += 1
        if single.certificate_status != want:
            fail(f"cert_status {single.certificate_status} != {want}")
        if single.next_update_utc is None:
            fail("nextUpdate missing")
        if want == ocsp.OCSPCertStatus.REVOKED:
            got = single.revocation_reason
            exp = None if reason == "-" else x509.ReasonFlags[reason]
            if got != exp:
                fail(f"revocation_reason {got} != {exp}")
        print(f"single serial={single.serial_number:x} status={single.certificate_status.name}"
              f" reason={getattr(single, 'revocation_reason', None)}")
    if n == 0:
        fail("no responses")
    try:
        got_nonce = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce.hex()
    except x509.ExtensionNotFound:
        got_nonce = "-"
    if got_nonce != nonce_hex:
        fail(f"nonce {got_nonce} != {nonce_hex}")
    print(f"responder_key_hash={resp.responder_key_hash.hex()} certs={len(resp.certificates)}")
    print("PY OCSP OK")


def check_ocsp_error(resp_path, status_name):
    resp = ocsp.load_der_ocsp_response(open(resp_path, "rb").read())
    if resp.response_status != ocsp.OCSPResponseStatus[status_name]:
        fail(f"status {resp.response_status} != {status_name}")
    print("PY OCSP ERROR OK")


def check_crl(crl_path, ca_pem, count):
    crl = x509.load_der_x509_crl(open(crl_path, "rb").read())
    ca = load_cert(ca_pem)
    if not crl.is_signature_valid(ca.public_key()):
        fail("CRL signature invalid")
    if len(crl) != int(count):
        fail(f"{len(crl)} entries != {count}")
    for e in crl:
        reason = None
        inval = None
        for ext in e.extensions:
            if isinstance(ext.value, x509.CRLReason):
                reason = ext.value.reason.name
            if isinstance(ext.value, x509.InvalidityDate):
                inval = ext.value.invalidity_date_utc.isoformat()
        print(f"entry serial={e.serial_number:x} date={e.revocation_date_utc.isoformat()}"
              f" reason={reason} invalidity={inval}")
    num = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    print(f"crl_number={num}")
    print("PY CRL OK")


def make_req(ca_pem, ee_pem, nonce_len, out):
    import os
    from cryptography.hazmat.primitives import hashes, serialization
    b = ocsp.OCSPRequestBuilder().add_certificate(load_cert(ee_pem), load_cert(ca_pem), hashes.SHA1())
    n = int(nonce_len)
    if n >= 0:
        b = b.add_extension(x509.OCSPNonce(os.urandom(n)), critical=False)
    with open(out, "wb") as f:
        f.write(b.build().public_bytes(serialization.Encoding.DER))
    print("PY REQ OK")


def main(argv):
    cmd = argv[1]
    if cmd == "ocsp":
        check_ocsp(*argv[2:7])
    elif cmd == "ocsp-error":
        check_ocsp_error(*argv[2:4])
    elif cmd == "make-req":
        make_req(*argv[2:6])
    elif cmd == "crl":
        check_crl(*argv[2:5])
    else:
        fail(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
