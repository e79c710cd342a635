"""Open a GM/T 0009 SM2EnvelopedKey with gmssl, an SM2/SM4 implementation independent of ours.

usage: sm2_envelope.py ENVELOPE.der SIGNING_KEY.pem ENCRYPTION_CERT.der
SIGNING_KEY.pem is the recipient's SM2 private key (PKCS#8, as `openssl genpkey` writes it).
Decrypts the SM4 key with SM2 (checking C3), the private scalar with SM4-ECB, and checks that
d*G is both the envelope's public key and the encryption certificate's. Prints `OK <d hex>`
and exits 0, or prints what failed and exits 1.
"""
import base64
import sys

from Cryptodome.Util.asn1 import DerBitString, DerOctetString, DerSequence
from gmssl import sm2, sm3, sm4

SM4_ECB = bytes.fromhex("06082a811ccf55016801")  # OID 1.2.156.10197.1.104.1


def fail(why):
    print("FAIL", why)
    sys.exit(1)


def pem_der(path):
    lines = open(path).read().strip().splitlines()
    return base64.b64decode("".join(l for l in lines if not l.startswith("-----")))


def private_scalar(pkcs8):
    """PrivateKeyInfo { version, algorithm, OCTET STRING ECPrivateKey { 1, OCTET STRING d, ... } }"""
    info = DerSequence().decode(pkcs8)
    ec = DerSequence().decode(DerOctetString().decode(info[2]).payload)
    return DerOctetString().decode(ec[1]).payload


def certificate_point(cert):
    tbs = DerSequence().decode(DerSequence().decode(cert)[0])
    fields = list(tbs)[1:] if tbs[0][0] == 0xA0 else list(tbs)
    spki = DerSequence().decode(fields[5])
    return DerBitString().decode(spki[1]).value


def main():
    envelope = open(sys.argv[1], "rb").read()
    d_sign = private_scalar(pem_der(sys.argv[2])).hex()
    cert_point = certificate_point(open(sys.argv[3], "rb").read())

    env = DerSequence().decode(envelope)
    if len(env) != 4:
        fail("SM2EnvelopedKey has %d fields" % len(env))
    if not env[0].startswith(b"\x30") or SM4_ECB not in env[0]:
        fail("symAlgID is not sm4-ecb")
    cipher = DerSequence().decode(env[1])
    x, y = cipher[0], cipher[1]  # DerSequence decodes INTEGERs to int
    if not isinstance(x, int) or not isinstance(y, int):
        fail("SM2Cipher coordinates are not INTEGERs")
    c3 = DerOctetString().decode(cipher[2]).payload
    c2 = DerOctetString().decode(cipher[3]).payload
    public = DerBitString().decode(env[2]).value
    encrypted = DerBitString().decode(env[3]).value

    crypt = sm2.CryptSM2(private_key=d_sign, public_key="", mode=1)
    c1 = "%064x%064x" % (x, y)
    sym_key = crypt.decrypt(bytes.fromhex(c1) + c3 + c2)
    xy = crypt._kg(int(d_sign, 16), c1)
    if bytes.fromhex(sm3.sm3_hash(list(bytes.fromhex(xy[:64]) + sym_key + bytes.fromhex(xy[64:])))) != c3:
        fail("C3 does not match: not encrypted to this signing key")
    if len(sym_key) != 16 or len(encrypted) != 32:
        fail("SM4 key %d bytes, encrypted key %d bytes" % (len(sym_key), len(encrypted)))

    box = sm4.CryptSM4(padding_mode=-1)  # neither PKCS#7 nor zero padding: two whole blocks
    box.set_key(sym_key, sm4.SM4_DECRYPT)
    d = box.crypt_ecb(encrypted)
    point = bytes.fromhex("04" + crypt._kg(int(d.hex(), 16), sm2.default_ecc_table["g"]))
    if point != public:
        fail("d*G is not the envelope's public key")
    if point != cert_point:
        fail("d*G is not the encryption certificate's public key")
    print("OK", d.hex())


main()
