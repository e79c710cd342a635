#!/usr/bin/env python3
"""Independent check of an issued certificate with Python `cryptography`.

usage: check_certificate.py CERT.pem ISSUER.pem EXPECT.json
EXPECT.json names what the profile promises; every mismatch is printed and the exit status is
the number of mismatches (0 = the certificate matches its profile).
"""
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, AuthorityInformationAccessOID

EKU = {
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
}


def main():
    cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
    issuer = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
    expect = json.load(open(sys.argv[3]))
    problems = []

    def check(cond, what):
        if not cond:
            problems.append(what)

    # Signature by the issuer's key.
    pub = issuer.public_key()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    except Exception as e:  # noqa: BLE001 - any failure is a finding
        problems.append(f"signature does not verify: {e}")
    check(cert.issuer == issuer.subject, "issuer != CA subject")
    check(cert.serial_number > 0 and cert.serial_number.bit_length() >= 64, "serial not >= 64 bits positive")
    ext = cert.extensions

    bc = ext.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
    check(bc.critical and not bc.value.ca, "basicConstraints must be critical, cA=false")
    ku = ext.get_extension_for_oid(ExtensionOID.KEY_USAGE)
    check(ku.critical, "keyUsage must be critical")
    check(ku.value.digital_signature == ("digitalSignature" in expect["key_usage"]), "digitalSignature bit")
    check(ku.value.content_commitment == ("nonRepudiation" in expect["key_usage"]), "nonRepudiation bit")
    check(not ku.value.key_cert_sign and not ku.value.crl_sign, "CA bits in keyUsage")
    eku = ext.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE)
    check(not eku.critical, "EKU must not be critical")
    check(set(eku.value) == {EKU[e] for e in expect["extended_key_usage"]}, f"EKU {list(eku.value)}")
    pol = ext.get_extension_for_oid(ExtensionOID.CERTIFICATE_POLICIES)
    check([p.policy_identifier.dotted_string for p in pol.value] == expect["policy_oids"], "policies")
    ski = ext.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    aki = ext.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    issuer_ski = issuer.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    check(aki.value.key_identifier == issuer_ski.value.digest, "AKI != issuer SKI")
    check(ski.value.digest == x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest, "SKI method 1")
    aia = ext.get_extension_for_oid(ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    ocsp = [d.access_location.value for d in aia.value if d.access_method == AuthorityInformationAccessOID.OCSP]
    issuers = [d.access_location.value for d in aia.value if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS]
    check(ocsp == [expect["ocsp_url"]], f"AIA OCSP {ocsp}")
    check(issuers == [expect["ca_issuers_url"]], f"AIA caIssuers {issuers}")
    crldp = ext.get_extension_for_oid(ExtensionOID.CRL_DISTRIBUTION_POINTS)
    urls = [n.value for dp in crldp.value for n in dp.full_name]
    check(urls == [expect["crl_url"]], f"CRLDP {urls}")
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    check([a.value for a in cn] == [expect["common_name"]], f"CN {[a.value for a in cn]}")
    if "email" in expect:
        san = ext.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        check(san.value.get_values_for_type(x509.RFC822Name) == [expect["email"]], "email SAN")
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    check(abs(days - expect["validity_days"]) <= 1, f"validity {days} days")
    check(cert.not_valid_after_utc <= issuer.not_valid_after_utc, "outlives its issuer")
    for p in problems:
        print("MISMATCH:", p)
    sys.exit(len(problems))


if __name__ == "__main__":
    main()
