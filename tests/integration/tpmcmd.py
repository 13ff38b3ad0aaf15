"""Raw TPM command builders and response parsers (stdlib only).

Used by integration tests that send raw TPM commands to vtpmd as hex
strings.  Everything is big-endian and follows the TCG wire formats:

* TPM 2.0: "TPM 2.0 Library, Part 2 (Structures)" / "Part 3 (Commands)".
* TPM 1.2: "TPM Main Part 2 (Structures)" / "Part 3 (Commands)".

Conventions
-----------
* Every builder returns the complete command packet as ``bytes``.
* Every ``parse_*`` function takes the complete response packet as ``bytes``
  and by default raises :class:`TpmError` when the response code is not 0
  (pass ``check=False`` to skip this check).
* ``hexs()`` / ``from_hex()`` convert to and from hex strings.

TPM 2.0 command layout::

    TPMI_ST_COMMAND_TAG tag        (0x8001 no sessions / 0x8002 sessions)
    UINT32              commandSize
    TPM_CC              commandCode
    TPM_HANDLE          handles[]
    UINT32              authorizationSize   (only with tag 0x8002)
    TPMS_AUTH_COMMAND   sessions[]          (only with tag 0x8002)
    BYTE                parameters[]

TPM 2.0 response layout::

    TPM_ST      tag
    UINT32      responseSize
    TPM_RC      responseCode
    TPM_HANDLE  handles[]
    UINT32      parameterSize           (only with tag 0x8002)
    BYTE        parameters[]
    TPMS_AUTH_RESPONSE sessions[]       (only with tag 0x8002)
"""

import hashlib
import os
import struct
from collections import namedtuple

__all__ = [  # noqa: RUF022 - grouped by topic, not alphabetically
    # helpers
    "hexs", "from_hex", "TpmError", "resp_rc", "resp_tag", "resp_size",
    "rc", "tag", "size", "check", "rc_str", "hash_alg", "pcr_extend_expected",
    # TPM 2.0 builders
    "startup", "shutdown", "self_test", "get_random", "pcr_extend",
    "pcr_extend_multi", "pcr_read", "create_primary", "create_primary_ecc_p256",
    "create_primary_rsa2048", "ecc_p256_storage_template",
    "ecc_p256_signing_template", "rsa2048_storage_template", "flush_context",
    "context_save", "context_load", "start_auth_session", "get_capability",
    "get_capability_tpm_properties", "get_capability_handles",
    "get_capability_pcrs", "nv_define_space", "nv_undefine_space", "nv_write",
    "nv_read", "nv_read_public", "read_clock", "password_auth",
    "nv_define_counter", "nv_increment", "evict_control",
    "get_capability_persistent",
    # TPM 2.0 parsers
    "parse_get_random", "parse_pcr_read", "parse_create_primary",
    "parse_tpmt_public", "parse_context_save", "parse_context_load",
    "parse_start_auth_session", "parse_get_capability",
    "parse_tpm_properties", "parse_handles", "parse_pcr_selections",
    "parse_nv_read", "parse_nv_read_public", "parse_read_clock",
    "parse_nv_counter",
    # TPM 1.2
    "tpm12_startup_clear", "tpm12_startup", "tpm12_get_capability",
    "tpm12_get_capability_version", "tpm12_get_capability_prop_pcr",
    "tpm12_extend", "tpm12_pcr_read", "tpm12_get_random", "tpm12_save_state",
    "tpm12_rc", "tpm12_check", "parse_tpm12_get_capability",
    "parse_tpm12_version", "parse_tpm12_prop_u32", "parse_tpm12_extend",
    "parse_tpm12_pcr_read", "parse_tpm12_get_random",
]

# --------------------------------------------------------------------------
# TPM 2.0 constants
# --------------------------------------------------------------------------

TPM_ST_NO_SESSIONS = 0x8001
TPM_ST_SESSIONS = 0x8002

TPM_SU_CLEAR = 0x0000
TPM_SU_STATE = 0x0001

# Command codes (TPM_CC)
TPM_CC_EvictControl = 0x0120
TPM_CC_NV_UndefineSpace = 0x0122
TPM_CC_NV_DefineSpace = 0x012A
TPM_CC_CreatePrimary = 0x0131
TPM_CC_NV_Increment = 0x0134
TPM_CC_NV_Write = 0x0137
TPM_CC_SelfTest = 0x0143
TPM_CC_Startup = 0x0144
TPM_CC_Shutdown = 0x0145
TPM_CC_NV_Read = 0x014E
TPM_CC_ContextLoad = 0x0161
TPM_CC_ContextSave = 0x0162
TPM_CC_FlushContext = 0x0165
TPM_CC_NV_ReadPublic = 0x0169
TPM_CC_StartAuthSession = 0x0176
TPM_CC_GetCapability = 0x017A
TPM_CC_GetRandom = 0x017B
TPM_CC_PCR_Read = 0x017E
TPM_CC_ReadClock = 0x0181
TPM_CC_PCR_Extend = 0x0182

# Permanent handles (TPM_RH / TPM_RS)
TPM_RH_OWNER = 0x40000001
TPM_RH_NULL = 0x40000007
TPM_RS_PW = 0x40000009
TPM_RH_LOCKOUT = 0x4000000A
TPM_RH_ENDORSEMENT = 0x4000000B
TPM_RH_PLATFORM = 0x4000000C

# Algorithms (TPM_ALG_ID)
TPM_ALG_RSA = 0x0001
TPM_ALG_SHA1 = 0x0004
TPM_ALG_AES = 0x0006
TPM_ALG_KEYEDHASH = 0x0008
TPM_ALG_SHA256 = 0x000B
TPM_ALG_SHA384 = 0x000C
TPM_ALG_SHA512 = 0x000D
TPM_ALG_NULL = 0x0010
TPM_ALG_ECDSA = 0x0018
TPM_ALG_ECC = 0x0023
TPM_ALG_SYMCIPHER = 0x0025
TPM_ALG_CFB = 0x0043

TPM_ECC_NIST_P256 = 0x0003

# Session types (TPM_SE)
TPM_SE_HMAC = 0x00
TPM_SE_POLICY = 0x01
TPM_SE_TRIAL = 0x03

# TPMA_SESSION
TPMA_SESSION_CONTINUESESSION = 0x01

# TPMA_OBJECT
TPMA_OBJECT_FIXEDTPM = 0x00000002
TPMA_OBJECT_STCLEAR = 0x00000004
TPMA_OBJECT_FIXEDPARENT = 0x00000010
TPMA_OBJECT_SENSITIVEDATAORIGIN = 0x00000020
TPMA_OBJECT_USERWITHAUTH = 0x00000040
TPMA_OBJECT_ADMINWITHPOLICY = 0x00000080
TPMA_OBJECT_NODA = 0x00000400
TPMA_OBJECT_RESTRICTED = 0x00010000
TPMA_OBJECT_DECRYPT = 0x00020000
TPMA_OBJECT_SIGN_ENCRYPT = 0x00040000

#: fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|restricted|decrypt
STORAGE_KEY_ATTRS = (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT
                     | TPMA_OBJECT_SENSITIVEDATAORIGIN
                     | TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA
                     | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT)
#: fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|sign
SIGNING_KEY_ATTRS = (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT
                     | TPMA_OBJECT_SENSITIVEDATAORIGIN
                     | TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA
                     | TPMA_OBJECT_SIGN_ENCRYPT)

# TPMA_NV
TPMA_NV_PPWRITE = 0x00000001
TPMA_NV_OWNERWRITE = 0x00000002
TPMA_NV_AUTHWRITE = 0x00000004
TPMA_NV_POLICYWRITE = 0x00000008
#: TPM_NT (bits 7:4 of TPMA_NV): the index type
TPMA_NV_TPM_NT_SHIFT = 4
TPM_NT_ORDINARY = 0x0
TPM_NT_COUNTER = 0x1
TPM_NT_BITS = 0x2
TPM_NT_EXTEND = 0x4
TPMA_NV_COUNTER = TPM_NT_COUNTER << TPMA_NV_TPM_NT_SHIFT  # 0x00000010
TPMA_NV_PPREAD = 0x00010000
TPMA_NV_OWNERREAD = 0x00020000
TPMA_NV_AUTHREAD = 0x00040000
TPMA_NV_POLICYREAD = 0x00080000
TPMA_NV_NO_DA = 0x02000000
TPMA_NV_ORDERLY = 0x04000000
TPMA_NV_WRITTEN = 0x20000000

#: Ordinary index (TPM_NT_ORDINARY), owner/auth read+write, noDA.
NV_DEFAULT_ATTRS = (TPMA_NV_OWNERWRITE | TPMA_NV_AUTHWRITE
                    | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD | TPMA_NV_NO_DA)
#: Counter index (TPM_NT_COUNTER), non-orderly (every increment is written
#: to NV at once), owner/auth read+write, noDA.
NV_COUNTER_ATTRS = NV_DEFAULT_ATTRS | TPMA_NV_COUNTER

# Capabilities (TPM_CAP) and properties (TPM_PT)
TPM_CAP_ALGS = 0x00000000
TPM_CAP_HANDLES = 0x00000001
TPM_CAP_COMMANDS = 0x00000002
TPM_CAP_PCRS = 0x00000005
TPM_CAP_TPM_PROPERTIES = 0x00000006

PT_FIXED = 0x100
TPM_PT_FAMILY_INDICATOR = 0x100
TPM_PT_LEVEL = 0x101
TPM_PT_REVISION = 0x102
TPM_PT_MANUFACTURER = 0x105
TPM_PT_VENDOR_STRING_1 = 0x106
TPM_PT_PCR_COUNT = 0x112
PT_VAR = 0x200

# Handle ranges (first octet = TPM_HT)
TPM_HT_NV_INDEX = 0x01
TPM_HT_HMAC_SESSION = 0x02
TPM_HT_POLICY_SESSION = 0x03
TPM_HT_PERMANENT = 0x40
TPM_HT_TRANSIENT = 0x80
TPM_HT_PERSISTENT = 0x81

# Selected response codes, for rc_str()
TPM_RC_SUCCESS = 0x000
TPM_RC_INITIALIZE = 0x100
TPM_RC_FAILURE = 0x101
TPM_RC_NV_DEFINED = 0x14C
TPM_RC_NV_UNINITIALIZED = 0x14A
TPM_RC_COMMAND_CODE = 0x143
TPM_RC_HANDLE = 0x08B
TPM_RC_VALUE = 0x084
TPM_RC_SIZE = 0x095
TPM_RC_BAD_AUTH = 0x0A2
TPM_RC_OBJECT_MEMORY = 0x902
TPM_RC_SESSION_MEMORY = 0x903
TPM_RC_RETRY = 0x922
TPM_RC_YIELDED = 0x908
TPM_RC_CANCELED = 0x909
TPM_RC_TESTING = 0x90A
TPM_RC_REFERENCE_H0 = 0x910
TPM_RC_NV_RATE = 0x920
TPM_RC_LOCKOUT = 0x921

_HASH_ALGS = {
    # name: (TPM_ALG_ID, digest size, hashlib name)
    "sha1": (TPM_ALG_SHA1, 20, "sha1"),
    "sha256": (TPM_ALG_SHA256, 32, "sha256"),
    "sha384": (TPM_ALG_SHA384, 48, "sha384"),
    "sha512": (TPM_ALG_SHA512, 64, "sha512"),
}
_HASH_BY_ID = {v[0]: (k, v[1]) for k, v in _HASH_ALGS.items()}

_RC_NAMES = {
    0x000: "TPM_RC_SUCCESS", 0x01E: "TPM_RC_BAD_TAG",
    0x100: "TPM_RC_INITIALIZE", 0x101: "TPM_RC_FAILURE",
    0x103: "TPM_RC_SEQUENCE", 0x10B: "TPM_RC_PRIVATE",
    0x119: "TPM_RC_HMAC", 0x120: "TPM_RC_DISABLED",
    0x121: "TPM_RC_EXCLUSIVE", 0x124: "TPM_RC_AUTH_TYPE",
    0x125: "TPM_RC_AUTH_MISSING", 0x126: "TPM_RC_POLICY",
    0x127: "TPM_RC_PCR", 0x128: "TPM_RC_PCR_CHANGED",
    0x12D: "TPM_RC_UPGRADE", 0x12E: "TPM_RC_TOO_MANY_CONTEXTS",
    0x12F: "TPM_RC_AUTH_UNAVAILABLE", 0x130: "TPM_RC_REBOOT",
    0x131: "TPM_RC_UNBALANCED", 0x142: "TPM_RC_COMMAND_SIZE",
    0x143: "TPM_RC_COMMAND_CODE", 0x144: "TPM_RC_AUTHSIZE",
    0x145: "TPM_RC_AUTH_CONTEXT", 0x146: "TPM_RC_NV_RANGE",
    0x147: "TPM_RC_NV_SIZE", 0x148: "TPM_RC_NV_LOCKED",
    0x149: "TPM_RC_NV_AUTHORIZATION", 0x14A: "TPM_RC_NV_UNINITIALIZED",
    0x14B: "TPM_RC_NV_SPACE", 0x14C: "TPM_RC_NV_DEFINED",
    0x150: "TPM_RC_BAD_CONTEXT", 0x151: "TPM_RC_CPHASH",
    0x152: "TPM_RC_PARENT", 0x153: "TPM_RC_NEEDS_TEST",
    0x154: "TPM_RC_NO_RESULT", 0x155: "TPM_RC_SENSITIVE",
    # format-one base codes (0x080 | n); parameter/handle/session number
    # is decoded separately in rc_str()
    0x081: "TPM_RC_ASYMMETRIC", 0x082: "TPM_RC_ATTRIBUTES",
    0x083: "TPM_RC_HASH", 0x084: "TPM_RC_VALUE",
    0x085: "TPM_RC_HIERARCHY", 0x087: "TPM_RC_KEY_SIZE",
    0x088: "TPM_RC_MGF", 0x089: "TPM_RC_MODE", 0x08A: "TPM_RC_TYPE",
    0x08B: "TPM_RC_HANDLE", 0x08C: "TPM_RC_KDF", 0x08D: "TPM_RC_RANGE",
    0x08E: "TPM_RC_AUTH_FAIL", 0x08F: "TPM_RC_NONCE",
    0x090: "TPM_RC_PP", 0x092: "TPM_RC_SCHEME", 0x095: "TPM_RC_SIZE",
    0x096: "TPM_RC_SYMMETRIC", 0x097: "TPM_RC_TAG",
    0x098: "TPM_RC_SELECTOR", 0x09A: "TPM_RC_INSUFFICIENT",
    0x09B: "TPM_RC_SIGNATURE", 0x09C: "TPM_RC_KEY", 0x09D: "TPM_RC_POLICY_FAIL",
    0x09F: "TPM_RC_INTEGRITY", 0x0A0: "TPM_RC_TICKET",
    0x0A1: "TPM_RC_RESERVED_BITS", 0x0A2: "TPM_RC_BAD_AUTH",
    0x0A3: "TPM_RC_EXPIRED", 0x0A4: "TPM_RC_POLICY_CC",
    0x0A5: "TPM_RC_BINDING", 0x0A6: "TPM_RC_CURVE",
    0x0A7: "TPM_RC_ECC_POINT",
    # warnings
    0x901: "TPM_RC_CONTEXT_GAP", 0x902: "TPM_RC_OBJECT_MEMORY",
    0x903: "TPM_RC_SESSION_MEMORY", 0x904: "TPM_RC_MEMORY",
    0x905: "TPM_RC_SESSION_HANDLES", 0x906: "TPM_RC_OBJECT_HANDLES",
    0x907: "TPM_RC_LOCALITY", 0x908: "TPM_RC_YIELDED",
    0x909: "TPM_RC_CANCELED", 0x90A: "TPM_RC_TESTING",
    0x910: "TPM_RC_REFERENCE_H0", 0x918: "TPM_RC_REFERENCE_S0",
    0x920: "TPM_RC_NV_RATE", 0x921: "TPM_RC_LOCKOUT",
    0x922: "TPM_RC_RETRY", 0x923: "TPM_RC_NV_UNAVAILABLE",
}

# --------------------------------------------------------------------------
# TPM 1.2 constants
# --------------------------------------------------------------------------

TPM_TAG_RQU_COMMAND = 0x00C1
TPM_TAG_RSP_COMMAND = 0x00C4

TPM_ORD_Extend = 0x00000014
TPM_ORD_PcrRead = 0x00000015
TPM_ORD_GetRandom = 0x00000046
TPM_ORD_GetCapability = 0x00000065
TPM_ORD_SaveState = 0x00000098
TPM_ORD_Startup = 0x00000099

TPM12_ST_CLEAR = 0x0001
TPM12_ST_STATE = 0x0002
TPM12_ST_DEACTIVATED = 0x0003

TPM12_CAP_PROPERTY = 0x00000005
TPM12_CAP_VERSION_VAL = 0x0000001A
TPM12_CAP_PROP_PCR = 0x00000101

# --------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------


class TpmError(Exception):
    """A TPM returned a non-zero response code (or a malformed response)."""

    def __init__(self, message, rc=None):
        super().__init__(message)
        self.rc = rc


def hexs(b):
    """bytes -> lowercase hex string without separators."""
    return bytes(b).hex()


def from_hex(s):
    """Hex string -> bytes.  Tolerates whitespace, ':' and a '0x' prefix."""
    s = "".join(s.split()).replace(":", "")
    if s[:2].lower() == "0x":
        s = s[2:]
    return bytes.fromhex(s)


def _u8(v):
    return struct.pack(">B", v)


def _u16(v):
    return struct.pack(">H", v)


def _u32(v):
    return struct.pack(">I", v)


def _u64(v):
    return struct.pack(">Q", v)


def _tpm2b(data=b""):
    """TPM2B_*: UINT16 size || BYTE buffer[size]."""
    data = bytes(data)
    return _u16(len(data)) + data


class _Reader:
    """Sequential big-endian reader over a byte string."""

    def __init__(self, data, offset=0):
        self.data = bytes(data)
        self.off = offset

    def take(self, n):
        if self.off + n > len(self.data):
            raise TpmError("truncated response: need %d bytes at offset %d, "
                           "have %d" % (n, self.off, len(self.data)))
        out = self.data[self.off:self.off + n]
        self.off += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def tpm2b(self):
        return self.take(self.u16())

    def rest(self):
        return self.take(len(self.data) - self.off)


def hash_alg(alg):
    """Return (TPM_ALG_ID, digest size) for 'sha1'/'sha256'/... or an id."""
    if isinstance(alg, int):
        if alg not in _HASH_BY_ID:
            raise ValueError("unknown hash algorithm 0x%04x" % alg)
        return alg, _HASH_BY_ID[alg][1]
    alg_id, dsize, _ = _HASH_ALGS[alg.lower()]
    return alg_id, dsize


def pcr_extend_expected(old, digest, alg="sha256"):
    """Expected PCR value after an extend: H(old || digest)."""
    name = alg if isinstance(alg, str) else _HASH_BY_ID[alg][0]
    return hashlib.new(name, bytes(old) + bytes(digest)).digest()


# --------------------------------------------------------------------------
# Response header helpers (identical layout for TPM 1.2 and TPM 2.0)
# --------------------------------------------------------------------------


def _header(resp):
    if len(resp) < 10:
        raise TpmError("response shorter than 10-byte header: %s" % hexs(resp))
    return struct.unpack(">HII", bytes(resp[:10]))


def resp_tag(resp):
    """Response tag (UINT16 at offset 0)."""
    return _header(resp)[0]


def resp_size(resp):
    """Response size field (UINT32 at offset 2)."""
    return _header(resp)[1]


def resp_rc(resp):
    """Response code (UINT32 at offset 6)."""
    return _header(resp)[2]


# short aliases
rc = resp_rc
tag = resp_tag
size = resp_size


def rc_str(code):
    """Human-readable rendering of a TPM 2.0 response code."""
    if code == 0:
        return "TPM_RC_SUCCESS"
    if code & 0x80:  # format one: error + parameter/handle/session number
        base = 0x080 | (code & 0x3F)
        name = _RC_NAMES.get(base, "0x%03x" % base)
        n = (code >> 8) & 0xF
        if code & 0x40:
            return "%s (parameter %d)" % (name, n)
        if n & 0x8:
            return "%s (session %d)" % (name, n & 0x7)
        return "%s (handle %d)" % (name, n)
    return _RC_NAMES.get(code, "rc 0x%x" % code)


def check(resp, what=None):
    """Return *resp* unchanged if rc == 0, else raise TpmError(rc in hex).

    Also validates that the size field matches the received length.
    """
    tg, sz, code = _header(resp)
    if sz != len(resp):
        raise TpmError("%sresponse size field %d != received length %d"
                       % (what + ": " if what else "", sz, len(resp)))
    if code != 0:
        raise TpmError("%sTPM returned rc=0x%08x (%s), tag=0x%04x"
                       % (what + ": " if what else "", code, rc_str(code), tg),
                       rc=code)
    return resp


def _response_body(resp, n_handles=0, chk=True, what=None):
    """Split a TPM 2.0 response into (handles, parameter bytes).

    With tag TPM_ST_SESSIONS the parameter area is preceded by a UINT32
    parameterSize and followed by the authorization area, which is skipped.
    """
    if chk:
        check(resp, what)
    r = _Reader(resp, 10)
    handles = [r.u32() for _ in range(n_handles)]
    if resp_tag(resp) == TPM_ST_SESSIONS:
        params = r.take(r.u32())
    else:
        params = r.rest()
    return handles, params


# --------------------------------------------------------------------------
# TPM 2.0 command construction
# --------------------------------------------------------------------------


def password_auth(auth=b"", attributes=TPMA_SESSION_CONTINUESESSION):
    """One TPMS_AUTH_COMMAND for the password session TPM_RS_PW.

    sessionHandle(UINT32)=TPM_RS_PW || nonceCaller TPM2B_NONCE (empty) ||
    sessionAttributes(BYTE) || hmac TPM2B_AUTH (the password).
    """
    return _u32(TPM_RS_PW) + _tpm2b(b"") + _u8(attributes) + _tpm2b(auth)


def _cmd2(cc, handles=(), params=b"", sessions=None):
    """Assemble a TPM 2.0 command.

    *sessions*: None for tag 0x8001, otherwise a list of encoded
    TPMS_AUTH_COMMAND structures (tag 0x8002, preceded by authorizationSize).
    """
    body = b"".join(_u32(h) for h in handles)
    if sessions is None:
        tg = TPM_ST_NO_SESSIONS
    else:
        tg = TPM_ST_SESSIONS
        auth = b"".join(sessions)
        body += _u32(len(auth)) + auth
    body += params
    return struct.pack(">HII", tg, 10 + len(body), cc) + body


def startup(clear=True):
    """TPM2_Startup(TPM_SU startupType: CLEAR=0 / STATE=1)."""
    return _cmd2(TPM_CC_Startup, params=_u16(TPM_SU_CLEAR if clear
                                             else TPM_SU_STATE))


def shutdown(clear=True):
    """TPM2_Shutdown(TPM_SU shutdownType: CLEAR=0 / STATE=1)."""
    return _cmd2(TPM_CC_Shutdown, params=_u16(TPM_SU_CLEAR if clear
                                              else TPM_SU_STATE))


def self_test(full=True):
    """TPM2_SelfTest(TPMI_YES_NO fullTest)."""
    return _cmd2(TPM_CC_SelfTest, params=_u8(1 if full else 0))


def data_socket_exchange(path, command, timeout=30.0):
    """One command over a swtpm-compatible data socket (raw TPM packets)."""
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(command)
        data = b""
        while len(data) < 10 or len(data) < struct.unpack(">I", data[2:6])[0]:
            chunk = s.recv(4096)
            if not chunk:
                raise AssertionError("%s closed before the answer" % path)
            data += chunk
        return data


def get_random(n):
    """TPM2_GetRandom(UINT16 bytesRequested)."""
    return _cmd2(TPM_CC_GetRandom, params=_u16(n))


def parse_get_random(resp, check=True):
    """TPM2_GetRandom response: TPM2B_DIGEST randomBytes -> bytes."""
    _, p = _response_body(resp, chk=check, what="GetRandom")
    return _Reader(p).tpm2b()


def pcr_extend_multi(pcr_index, digests, auth=b""):
    """TPM2_PCR_Extend with several banks at once.

    *digests*: dict {alg name or TPM_ALG_ID: digest bytes}.
    Handle: TPMI_DH_PCR pcrHandle (authorized by a password session).
    Parameter: TPML_DIGEST_VALUES = UINT32 count ||
    count * TPMT_HA (TPMI_ALG_HASH hashAlg || BYTE digest[size]).
    """
    values = b""
    for alg, digest in digests.items():
        alg_id, dsize = hash_alg(alg)
        if len(digest) != dsize:
            raise ValueError("digest for alg 0x%04x must be %d bytes"
                             % (alg_id, dsize))
        values += _u16(alg_id) + bytes(digest)
    params = _u32(len(digests)) + values
    return _cmd2(TPM_CC_PCR_Extend, handles=[pcr_index], params=params,
                 sessions=[password_auth(auth)])


def pcr_extend(pcr_index, digest, alg="sha256", auth=b""):
    """TPM2_PCR_Extend of a single bank (default sha256, 32-byte digest)."""
    return pcr_extend_multi(pcr_index, {alg: digest}, auth=auth)


def _pcr_selection(pcrs, alg, size_of_select=3):
    """TPMS_PCR_SELECTION: hash || UINT8 sizeofSelect || BYTE pcrSelect[]."""
    bitmap = bytearray(size_of_select)
    for p in pcrs:
        bitmap[p // 8] |= 1 << (p % 8)
    return _u16(hash_alg(alg)[0]) + _u8(size_of_select) + bytes(bitmap)


def _tpml_pcr_selection(selections):
    """TPML_PCR_SELECTION: UINT32 count || TPMS_PCR_SELECTION[count].

    *selections*: list of (alg, [pcr indices]).
    """
    return _u32(len(selections)) + b"".join(
        _pcr_selection(pcrs, alg) for alg, pcrs in selections)


def pcr_read(pcr_index, alg="sha256"):
    """TPM2_PCR_Read(TPML_PCR_SELECTION pcrSelectionIn) for one PCR/bank."""
    return _cmd2(TPM_CC_PCR_Read,
                 params=_tpml_pcr_selection([(alg, [pcr_index])]))


def _parse_tpml_pcr_selection(r):
    """Read a TPML_PCR_SELECTION -> list of (TPM_ALG_ID, [pcr indices])."""
    out = []
    for _ in range(r.u32()):
        alg = r.u16()
        bitmap = r.take(r.u8())
        pcrs = [i * 8 + b for i, byte in enumerate(bitmap)
                for b in range(8) if byte & (1 << b)]
        out.append((alg, pcrs))
    return out


PcrReadResult = namedtuple("PcrReadResult",
                           "digest update_counter digests selection")
PcrReadResult.__doc__ = """Parsed TPM2_PCR_Read response.

digest:         first digest (bytes) or None if the bank is not allocated
update_counter: UINT32 pcrUpdateCounter
digests:        list of all returned digests (TPML_DIGEST)
selection:      pcrSelectionOut as list of (TPM_ALG_ID, [pcrs])
"""


def parse_pcr_read(resp, check=True):
    """TPM2_PCR_Read response.

    UINT32 pcrUpdateCounter || TPML_PCR_SELECTION pcrSelectionOut ||
    TPML_DIGEST pcrValues (UINT32 count || TPM2B_DIGEST[count]).
    """
    _, p = _response_body(resp, chk=check, what="PCR_Read")
    r = _Reader(p)
    counter = r.u32()
    selection = _parse_tpml_pcr_selection(r)
    digests = [r.tpm2b() for _ in range(r.u32())]
    return PcrReadResult(digests[0] if digests else None, counter, digests,
                         selection)


# --- object templates (TPMT_PUBLIC) ---------------------------------------


def _sym_def_object(alg=TPM_ALG_AES, key_bits=128, mode=TPM_ALG_CFB):
    """TPMT_SYM_DEF_OBJECT: algorithm [|| keyBits || mode unless NULL]."""
    if alg == TPM_ALG_NULL:
        return _u16(TPM_ALG_NULL)
    return _u16(alg) + _u16(key_bits) + _u16(mode)


def ecc_p256_storage_template(name_alg=TPM_ALG_SHA256,
                              attributes=STORAGE_KEY_ATTRS):
    """TPMT_PUBLIC of a restricted-decrypt ECC NIST P-256 storage key.

    type=ECC || nameAlg || objectAttributes || authPolicy(empty) ||
    TPMS_ECC_PARMS(symmetric=AES-128-CFB, scheme=NULL, curveID=NIST_P256,
    kdf=NULL) || unique TPMS_ECC_POINT(x=empty, y=empty).
    """
    parms = (_sym_def_object() + _u16(TPM_ALG_NULL)
             + _u16(TPM_ECC_NIST_P256) + _u16(TPM_ALG_NULL))
    return (_u16(TPM_ALG_ECC) + _u16(name_alg) + _u32(attributes)
            + _tpm2b(b"") + parms + _tpm2b(b"") + _tpm2b(b""))


def ecc_p256_signing_template(name_alg=TPM_ALG_SHA256,
                              attributes=SIGNING_KEY_ATTRS):
    """TPMT_PUBLIC of an unrestricted ECDSA-SHA256 NIST P-256 signing key."""
    parms = (_sym_def_object(TPM_ALG_NULL)
             + _u16(TPM_ALG_ECDSA) + _u16(TPM_ALG_SHA256)
             + _u16(TPM_ECC_NIST_P256) + _u16(TPM_ALG_NULL))
    return (_u16(TPM_ALG_ECC) + _u16(name_alg) + _u32(attributes)
            + _tpm2b(b"") + parms + _tpm2b(b"") + _tpm2b(b""))


def rsa2048_storage_template(name_alg=TPM_ALG_SHA256,
                             attributes=STORAGE_KEY_ATTRS):
    """TPMT_PUBLIC of a restricted-decrypt RSA-2048 storage key.

    type=RSA || nameAlg || objectAttributes || authPolicy(empty) ||
    TPMS_RSA_PARMS(symmetric=AES-128-CFB, scheme=NULL, keyBits=2048,
    exponent=0 i.e. 65537) || unique TPM2B_PUBLIC_KEY_RSA (empty).
    """
    parms = _sym_def_object() + _u16(TPM_ALG_NULL) + _u16(2048) + _u32(0)
    return (_u16(TPM_ALG_RSA) + _u16(name_alg) + _u32(attributes)
            + _tpm2b(b"") + parms + _tpm2b(b""))


def create_primary(public_template, hierarchy=TPM_RH_OWNER,
                   hierarchy_auth=b"", user_auth=b"", sensitive_data=b"",
                   outside_info=b"", creation_pcrs=()):
    """TPM2_CreatePrimary.

    Handle: TPMI_RH_HIERARCHY primaryHandle (password session).
    Parameters:
      TPM2B_SENSITIVE_CREATE inSensitive = UINT16 size ||
          TPM2B_AUTH userAuth || TPM2B_SENSITIVE_DATA data
      TPM2B_PUBLIC inPublic = UINT16 size || TPMT_PUBLIC
      TPM2B_DATA outsideInfo
      TPML_PCR_SELECTION creationPCR  (list of (alg, [pcrs]))
    """
    sensitive = _tpm2b(_tpm2b(user_auth) + _tpm2b(sensitive_data))
    params = (sensitive + _tpm2b(public_template) + _tpm2b(outside_info)
              + _tpml_pcr_selection(list(creation_pcrs)))
    return _cmd2(TPM_CC_CreatePrimary, handles=[hierarchy], params=params,
                 sessions=[password_auth(hierarchy_auth)])


def create_primary_ecc_p256(hierarchy=TPM_RH_OWNER, signing=False, **kw):
    """CreatePrimary of an ECC P-256 storage (or, signing=True, ECDSA) key."""
    tmpl = (ecc_p256_signing_template() if signing
            else ecc_p256_storage_template())
    return create_primary(tmpl, hierarchy=hierarchy, **kw)


def create_primary_rsa2048(hierarchy=TPM_RH_OWNER, **kw):
    """CreatePrimary of an RSA-2048 storage key (slow: tens of ms..seconds)."""
    return create_primary(rsa2048_storage_template(), hierarchy=hierarchy,
                          **kw)


PublicArea = namedtuple("PublicArea",
                        "type name_alg attributes auth_policy ecc_x ecc_y "
                        "rsa_modulus rsa_exponent raw")


def _skip_scheme(r):
    """TPMT_*_SCHEME / TPMT_KDF_SCHEME: scheme [|| hashAlg unless NULL]."""
    scheme = r.u16()
    if scheme != TPM_ALG_NULL:
        r.u16()
    return scheme


def _skip_sym_def_object(r):
    alg = r.u16()
    if alg != TPM_ALG_NULL:
        r.u16()  # keyBits
        r.u16()  # mode
    return alg


def parse_tpmt_public(data):
    """Parse a TPMT_PUBLIC of type ECC or RSA into a PublicArea.

    ECC: unique = TPMS_ECC_POINT (TPM2B x || TPM2B y).
    RSA: unique = TPM2B_PUBLIC_KEY_RSA (modulus); exponent 0 means 65537.
    """
    r = _Reader(data)
    typ, name_alg, attrs = r.u16(), r.u16(), r.u32()
    policy = r.tpm2b()
    x = y = modulus = exponent = None
    if typ == TPM_ALG_ECC:
        _skip_sym_def_object(r)
        _skip_scheme(r)  # TPMT_ECC_SCHEME
        r.u16()  # curveID
        _skip_scheme(r)  # TPMT_KDF_SCHEME
        x, y = r.tpm2b(), r.tpm2b()
    elif typ == TPM_ALG_RSA:
        _skip_sym_def_object(r)
        _skip_scheme(r)  # TPMT_RSA_SCHEME
        r.u16()  # keyBits
        exponent = r.u32() or 65537
        modulus = r.tpm2b()
    else:
        raise TpmError("parse_tpmt_public: unsupported type 0x%04x" % typ)
    return PublicArea(typ, name_alg, attrs, policy, x, y, modulus, exponent,
                      bytes(data))


CreatePrimaryResult = namedtuple("CreatePrimaryResult",
                                 "handle public name ecc_x ecc_y rsa_modulus")
CreatePrimaryResult.__doc__ = """Parsed TPM2_CreatePrimary response.

handle: TPM_HANDLE objectHandle (0x80xxxxxx)
public: PublicArea (parsed outPublic)
name:   TPM2B_NAME contents (nameAlg || H(public))
ecc_x, ecc_y: ECC point coordinates (or None); rsa_modulus (or None)
"""


def parse_create_primary(resp, check=True):
    """TPM2_CreatePrimary response.

    Handle objectHandle || UINT32 parameterSize || TPM2B_PUBLIC outPublic ||
    TPM2B_CREATION_DATA || TPM2B_DIGEST creationHash ||
    TPMT_TK_CREATION (tag || hierarchy || TPM2B_DIGEST) || TPM2B_NAME name.
    """
    (handle,), p = _response_body(resp, 1, chk=check, what="CreatePrimary")
    r = _Reader(p)
    pub = parse_tpmt_public(r.tpm2b())
    r.tpm2b()  # creationData
    r.tpm2b()  # creationHash
    r.u16()  # creationTicket.tag
    r.u32()  # creationTicket.hierarchy
    r.tpm2b()  # creationTicket.digest
    name = r.tpm2b()
    return CreatePrimaryResult(handle, pub, name, pub.ecc_x, pub.ecc_y,
                               pub.rsa_modulus)


def evict_control(object_handle, persistent_handle, auth_handle=TPM_RH_OWNER,
                  hierarchy_auth=b""):
    """TPM2_EvictControl (TPM_CC 0x120).

    Handles: TPMI_RH_PROVISION auth (owner or platform, password session),
    TPMI_DH_OBJECT objectHandle.  Param: TPMI_DH_PERSISTENT persistentHandle.
    With a transient *object_handle* this makes a persistent copy at
    *persistent_handle* (0x81xxxxxx; owner range 0x81000000-0x817FFFFF);
    with *object_handle* == *persistent_handle* it evicts (deletes) the
    persistent object.  No response parameters.
    """
    return _cmd2(TPM_CC_EvictControl, handles=[auth_handle, object_handle],
                 params=_u32(persistent_handle),
                 sessions=[password_auth(hierarchy_auth)])


def flush_context(handle):
    """TPM2_FlushContext(TPMI_DH_CONTEXT flushHandle) - handle is a param."""
    return _cmd2(TPM_CC_FlushContext, params=_u32(handle))


def context_save(handle):
    """TPM2_ContextSave(Handle saveHandle)."""
    return _cmd2(TPM_CC_ContextSave, handles=[handle])


SavedContext = namedtuple("SavedContext",
                          "sequence saved_handle hierarchy blob raw")
SavedContext.__doc__ = """Parsed TPMS_CONTEXT.

sequence (UINT64), saved_handle (TPMI_DH_SAVED), hierarchy (TPMI_RH_HIERARCHY),
blob (TPM2B_CONTEXT_DATA contents), raw (the whole TPMS_CONTEXT, for
context_load()).
"""


def parse_context_save(resp, check=True):
    """TPM2_ContextSave response: TPMS_CONTEXT context -> SavedContext.

    TPMS_CONTEXT = UINT64 sequence || TPMI_DH_SAVED savedHandle ||
    TPMI_RH_HIERARCHY hierarchy || TPM2B_CONTEXT_DATA contextBlob.
    """
    _, p = _response_body(resp, chk=check, what="ContextSave")
    r = _Reader(p)
    seq, saved, hier, blob = r.u64(), r.u32(), r.u32(), r.tpm2b()
    return SavedContext(seq, saved, hier, blob, p[:r.off])


def context_load(context):
    """TPM2_ContextLoad(TPMS_CONTEXT context).

    *context*: a SavedContext or raw TPMS_CONTEXT bytes.
    """
    raw = context.raw if isinstance(context, SavedContext) else bytes(context)
    return _cmd2(TPM_CC_ContextLoad, params=raw)


def parse_context_load(resp, check=True):
    """TPM2_ContextLoad response: TPMI_DH_CONTEXT loadedHandle -> int."""
    (handle,), _ = _response_body(resp, 1, chk=check, what="ContextLoad")
    return handle


_SESSION_TYPES = {"hmac": TPM_SE_HMAC, "policy": TPM_SE_POLICY,
                  "trial": TPM_SE_TRIAL}


def start_auth_session(session_type="hmac", nonce_caller=None,
                       auth_hash="sha256", tpm_key=TPM_RH_NULL,
                       bind=TPM_RH_NULL):
    """TPM2_StartAuthSession, unsalted/unbound by default.

    Handles: TPMI_DH_OBJECT tpmKey, TPMI_DH_ENTITY bind (both TPM_RH_NULL).
    Params: TPM2B_NONCE nonceCaller (16 random bytes by default) ||
    TPM2B_ENCRYPTED_SECRET encryptedSalt (empty) || TPM_SE sessionType ||
    TPMT_SYM_DEF symmetric (TPM_ALG_NULL) || TPMI_ALG_HASH authHash.
    *session_type*: 'hmac', 'policy', 'trial' or a TPM_SE value.
    """
    if isinstance(session_type, str):
        session_type = _SESSION_TYPES[session_type.lower()]
    if nonce_caller is None:
        nonce_caller = os.urandom(16)
    params = (_tpm2b(nonce_caller) + _tpm2b(b"") + _u8(session_type)
              + _u16(TPM_ALG_NULL) + _u16(hash_alg(auth_hash)[0]))
    return _cmd2(TPM_CC_StartAuthSession, handles=[tpm_key, bind],
                 params=params)


StartAuthSessionResult = namedtuple("StartAuthSessionResult",
                                    "handle nonce_tpm")


def parse_start_auth_session(resp, check=True):
    """Response: TPMI_SH_AUTH_SESSION sessionHandle || TPM2B_NONCE nonceTPM."""
    (handle,), p = _response_body(resp, 1, chk=check,
                                  what="StartAuthSession")
    return StartAuthSessionResult(handle, _Reader(p).tpm2b())


def get_capability(cap, prop, count):
    """TPM2_GetCapability(TPM_CAP capability, UINT32 property,
    UINT32 propertyCount)."""
    return _cmd2(TPM_CC_GetCapability,
                 params=_u32(cap) + _u32(prop) + _u32(count))


def get_capability_tpm_properties(first_prop=PT_FIXED, count=64):
    """GetCapability(TPM_CAP_TPM_PROPERTIES, first_prop, count)."""
    return get_capability(TPM_CAP_TPM_PROPERTIES, first_prop, count)


def get_capability_handles(first_handle=TPM_HT_TRANSIENT << 24, count=64):
    """GetCapability(TPM_CAP_HANDLES, first_handle, count); the handle type
    is given by the top octet of *first_handle* (default: transient)."""
    return get_capability(TPM_CAP_HANDLES, first_handle, count)


def get_capability_persistent(count=64):
    """GetCapability(TPM_CAP_HANDLES, first persistent handle, count):
    the persistent objects (0x81xxxxxx); parse with :func:`parse_handles`."""
    return get_capability(TPM_CAP_HANDLES, TPM_HT_PERSISTENT << 24, count)


def get_capability_pcrs():
    """GetCapability(TPM_CAP_PCRS, 0, 1): the allocated PCR banks."""
    return get_capability(TPM_CAP_PCRS, 0, 1)


CapabilityResult = namedtuple("CapabilityResult", "more_data capability data")


def parse_get_capability(resp, check=True):
    """Response: TPMI_YES_NO moreData || TPMS_CAPABILITY_DATA
    (TPM_CAP capability || union data).  ``data`` is left raw."""
    _, p = _response_body(resp, chk=check, what="GetCapability")
    r = _Reader(p)
    more, cap = r.u8(), r.u32()
    return CapabilityResult(bool(more), cap, r.rest())


def parse_tpm_properties(resp, check=True):
    """TPM_CAP_TPM_PROPERTIES response -> (dict {TPM_PT: UINT32}, moreData).

    data = TPML_TAGGED_TPM_PROPERTY: UINT32 count ||
    count * (TPM_PT property || UINT32 value).
    """
    cap = parse_get_capability(resp, check)
    if cap.capability != TPM_CAP_TPM_PROPERTIES:
        raise TpmError("unexpected capability 0x%x" % cap.capability)
    r = _Reader(cap.data)
    props = {}
    for _ in range(r.u32()):
        k = r.u32()
        props[k] = r.u32()
    return props, cap.more_data


def parse_handles(resp, check=True):
    """TPM_CAP_HANDLES response -> (list of handles, moreData).

    data = TPML_HANDLE: UINT32 count || TPM_HANDLE[count].
    """
    cap = parse_get_capability(resp, check)
    if cap.capability != TPM_CAP_HANDLES:
        raise TpmError("unexpected capability 0x%x" % cap.capability)
    r = _Reader(cap.data)
    return [r.u32() for _ in range(r.u32())], cap.more_data


def parse_pcr_selections(resp, check=True):
    """TPM_CAP_PCRS response -> list of (TPM_ALG_ID, [allocated pcrs])."""
    cap = parse_get_capability(resp, check)
    if cap.capability != TPM_CAP_PCRS:
        raise TpmError("unexpected capability 0x%x" % cap.capability)
    return _parse_tpml_pcr_selection(_Reader(cap.data))


def _nv_public(index, data_size, attributes, auth_policy=b"",
               name_alg=TPM_ALG_SHA256):
    """TPMS_NV_PUBLIC: TPMI_RH_NV_INDEX nvIndex || TPMI_ALG_HASH nameAlg ||
    TPMA_NV attributes || TPM2B_DIGEST authPolicy || UINT16 dataSize."""
    return (_u32(index) + _u16(name_alg) + _u32(attributes)
            + _tpm2b(auth_policy) + _u16(data_size))


def nv_define_space(index, data_size, attributes=NV_DEFAULT_ATTRS,
                    index_auth=b"", auth_handle=TPM_RH_OWNER,
                    hierarchy_auth=b"", name_alg=TPM_ALG_SHA256,
                    auth_policy=b""):
    """TPM2_NV_DefineSpace (ordinary index by default).

    Handle: TPMI_RH_PROVISION authHandle (password session).
    Params: TPM2B_AUTH auth || TPM2B_NV_PUBLIC publicInfo.
    *index* is the full handle, e.g. 0x01500000.
    """
    params = _tpm2b(index_auth) + _tpm2b(
        _nv_public(index, data_size, attributes, auth_policy, name_alg))
    return _cmd2(TPM_CC_NV_DefineSpace, handles=[auth_handle], params=params,
                 sessions=[password_auth(hierarchy_auth)])


def nv_define_counter(index, attributes=NV_COUNTER_ATTRS, **kw):
    """TPM2_NV_DefineSpace of a counter index (TPM_NT_COUNTER, dataSize 8).

    *attributes* must carry TPM_NT_COUNTER in bits 7:4 (the default is
    :data:`NV_COUNTER_ATTRS`: non-orderly, owner/auth read+write, noDA).
    Other keywords as for :func:`nv_define_space`.
    """
    if (attributes >> TPMA_NV_TPM_NT_SHIFT) & 0xF != TPM_NT_COUNTER:
        raise ValueError("counter attributes need TPM_NT_COUNTER")
    return nv_define_space(index, 8, attributes=attributes, **kw)


def nv_increment(index, auth_handle=TPM_RH_OWNER, auth=b""):
    """TPM2_NV_Increment (TPM_CC 0x134) of a counter index.

    Handles: TPMI_RH_NV_AUTH authHandle (owner by default; pass the index
    itself for AUTHWRITE), TPMI_RH_NV_INDEX nvIndex.  No parameters; the
    response has none either.
    """
    return _cmd2(TPM_CC_NV_Increment, handles=[auth_handle, index],
                 sessions=[password_auth(auth)])


def parse_nv_counter(resp, check=True):
    """TPM2_NV_Read response of a counter index (8 bytes) -> int (UINT64)."""
    data = parse_nv_read(resp, check)
    if len(data) != 8:
        raise TpmError("counter read returned %d bytes, expected 8"
                       % len(data))
    return struct.unpack(">Q", data)[0]


def nv_undefine_space(index, auth_handle=TPM_RH_OWNER, hierarchy_auth=b""):
    """TPM2_NV_UndefineSpace(authHandle, nvIndex), password session."""
    return _cmd2(TPM_CC_NV_UndefineSpace, handles=[auth_handle, index],
                 sessions=[password_auth(hierarchy_auth)])


def nv_write(index, data, offset=0, auth_handle=TPM_RH_OWNER, auth=b""):
    """TPM2_NV_Write.

    Handles: TPMI_RH_NV_AUTH authHandle (owner by default; pass the index
    itself for AUTHWRITE), TPMI_RH_NV_INDEX nvIndex.
    Params: TPM2B_MAX_NV_BUFFER data || UINT16 offset.
    """
    return _cmd2(TPM_CC_NV_Write, handles=[auth_handle, index],
                 params=_tpm2b(data) + _u16(offset),
                 sessions=[password_auth(auth)])


def nv_read(index, read_size, offset=0, auth_handle=TPM_RH_OWNER, auth=b""):
    """TPM2_NV_Read.

    Handles: TPMI_RH_NV_AUTH authHandle, TPMI_RH_NV_INDEX nvIndex.
    Params: UINT16 size || UINT16 offset.
    """
    return _cmd2(TPM_CC_NV_Read, handles=[auth_handle, index],
                 params=_u16(read_size) + _u16(offset),
                 sessions=[password_auth(auth)])


def parse_nv_read(resp, check=True):
    """TPM2_NV_Read response: TPM2B_MAX_NV_BUFFER data -> bytes."""
    _, p = _response_body(resp, chk=check, what="NV_Read")
    return _Reader(p).tpm2b()


def nv_read_public(index):
    """TPM2_NV_ReadPublic(TPMI_RH_NV_INDEX nvIndex), no sessions."""
    return _cmd2(TPM_CC_NV_ReadPublic, handles=[index])


NvPublic = namedtuple("NvPublic",
                      "index name_alg attributes auth_policy data_size name")


def parse_nv_read_public(resp, check=True):
    """Response: TPM2B_NV_PUBLIC nvPublic || TPM2B_NAME nvName."""
    _, p = _response_body(resp, chk=check, what="NV_ReadPublic")
    r = _Reader(p)
    pub = _Reader(r.tpm2b())
    index, name_alg, attrs = pub.u32(), pub.u16(), pub.u32()
    policy, data_size = pub.tpm2b(), pub.u16()
    return NvPublic(index, name_alg, attrs, policy, data_size, r.tpm2b())


def read_clock():
    """TPM2_ReadClock() - no parameters."""
    return _cmd2(TPM_CC_ReadClock)


ClockInfo = namedtuple("ClockInfo",
                       "time clock reset_count restart_count safe")


def parse_read_clock(resp, check=True):
    """Response: TPMS_TIME_INFO = UINT64 time || TPMS_CLOCK_INFO
    (UINT64 clock || UINT32 resetCount || UINT32 restartCount ||
    TPMI_YES_NO safe)."""
    _, p = _response_body(resp, chk=check, what="ReadClock")
    r = _Reader(p)
    return ClockInfo(r.u64(), r.u64(), r.u32(), r.u32(), bool(r.u8()))


# --------------------------------------------------------------------------
# TPM 1.2
# --------------------------------------------------------------------------
#
# Command: TPM_TAG tag (0x00C1) || UINT32 paramSize || TPM_COMMAND_CODE ord
#          || parameters
# Response: TPM_TAG tag (0x00C4) || UINT32 paramSize || TPM_RESULT returnCode
#          || parameters


def _cmd12(ordinal, params=b""):
    return struct.pack(">HII", TPM_TAG_RQU_COMMAND, 10 + len(params),
                       ordinal) + params


def tpm12_rc(resp):
    """TPM_RESULT returnCode of a TPM 1.2 response."""
    return resp_rc(resp)


def tpm12_check(resp, what=None):
    """Raise TpmError (rc in hex) unless rc == 0; return *resp*."""
    tg, sz, code = _header(resp)
    prefix = what + ": " if what else ""
    if sz != len(resp):
        raise TpmError("%sresponse size field %d != received length %d"
                       % (prefix, sz, len(resp)))
    if code != 0:
        raise TpmError("%sTPM 1.2 returned rc=0x%08x, tag=0x%04x"
                       % (prefix, code, tg), rc=code)
    return resp


def _body12(resp, chk, what):
    if chk:
        tpm12_check(resp, what)
    return bytes(resp[10:])


def tpm12_startup(startup_type=TPM12_ST_CLEAR):
    """TPM_Startup(TPM_STARTUP_TYPE: CLEAR=1, STATE=2, DEACTIVATED=3)."""
    return _cmd12(TPM_ORD_Startup, _u16(startup_type))


def tpm12_startup_clear():
    """TPM_Startup(TPM_ST_CLEAR)."""
    return tpm12_startup(TPM12_ST_CLEAR)


def tpm12_save_state():
    """TPM_SaveState() - no parameters."""
    return _cmd12(TPM_ORD_SaveState)


def tpm12_get_capability(cap, subcap=b""):
    """TPM_GetCapability(TPM_CAPABILITY_AREA capArea || UINT32 subCapSize
    || BYTE subCap[subCapSize]).  *subcap* is raw bytes or a UINT32 int."""
    if isinstance(subcap, int):
        subcap = _u32(subcap)
    return _cmd12(TPM_ORD_GetCapability,
                  _u32(cap) + _u32(len(subcap)) + bytes(subcap))


def tpm12_get_capability_version():
    """TPM_GetCapability(TPM_CAP_VERSION_VAL, empty subCap)."""
    return tpm12_get_capability(TPM12_CAP_VERSION_VAL)


def tpm12_get_capability_prop_pcr():
    """TPM_GetCapability(TPM_CAP_PROPERTY, TPM_CAP_PROP_PCR): number of PCRs."""
    return tpm12_get_capability(TPM12_CAP_PROPERTY, TPM12_CAP_PROP_PCR)


def parse_tpm12_get_capability(resp, check=True):
    """Response: UINT32 respSize || BYTE resp[respSize] -> bytes."""
    r = _Reader(_body12(resp, check, "TPM_GetCapability"))
    return r.take(r.u32())


def parse_tpm12_prop_u32(resp, check=True):
    """A TPM_CAP_PROPERTY response carrying one UINT32 (e.g. PROP_PCR)."""
    return struct.unpack(">I", parse_tpm12_get_capability(resp, check))[0]


Tpm12Version = namedtuple("Tpm12Version",
                          "tag major minor rev_major rev_minor spec_level "
                          "errata_rev vendor_id vendor_specific")


def parse_tpm12_version(resp, check=True):
    """TPM_CAP_VERSION_VAL response -> Tpm12Version.

    TPM_CAP_VERSION_INFO = TPM_STRUCTURE_TAG tag (0x0030) ||
    TPM_VERSION (BYTE major, minor, revMajor, revMinor) || UINT16 specLevel
    || BYTE errataRev || BYTE tpmVendorID[4] || UINT16 vendorSpecificSize ||
    BYTE vendorSpecific[].
    """
    r = _Reader(parse_tpm12_get_capability(resp, check))
    tg = r.u16()
    major, minor, rmaj, rmin = r.take(4)
    spec, errata, vendor = r.u16(), r.u8(), r.take(4)
    vs = r.take(r.u16())
    return Tpm12Version(tg, major, minor, rmaj, rmin, spec, errata, vendor, vs)


def tpm12_extend(pcr, digest20):
    """TPM_Extend(TPM_PCRINDEX pcrNum || TPM_DIGEST inDigest[20])."""
    if len(digest20) != 20:
        raise ValueError("TPM 1.2 extend digest must be 20 bytes")
    return _cmd12(TPM_ORD_Extend, _u32(pcr) + bytes(digest20))


def parse_tpm12_extend(resp, check=True):
    """Response: TPM_PCRVALUE outDigest (20 bytes) = new PCR value."""
    return _Reader(_body12(resp, check, "TPM_Extend")).take(20)


def tpm12_pcr_read(pcr):
    """TPM_PcrRead(TPM_PCRINDEX pcrIndex)."""
    return _cmd12(TPM_ORD_PcrRead, _u32(pcr))


def parse_tpm12_pcr_read(resp, check=True):
    """Response: TPM_PCRVALUE outDigest (20 bytes)."""
    return _Reader(_body12(resp, check, "TPM_PcrRead")).take(20)


def tpm12_get_random(n):
    """TPM_GetRandom(UINT32 bytesRequested)."""
    return _cmd12(TPM_ORD_GetRandom, _u32(n))


def parse_tpm12_get_random(resp, check=True):
    """Response: UINT32 randomBytesSize || BYTE randomBytes[] -> bytes."""
    r = _Reader(_body12(resp, check, "TPM_GetRandom"))
    return r.take(r.u32())
