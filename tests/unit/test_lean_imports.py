"""simple-salesforce loads without its SOAP metadata client and PyJWT, which still work.

Each probe runs in a fresh interpreter: this test process may have imported
simple-salesforce (or PyJWT) already, and then :func:`defer` rightly does
nothing.
"""

from __future__ import annotations

import subprocess
import sys

_HEAVY = "('zeep', 'lxml', 'cryptography', 'jwt.algorithms')"


def _probe(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_salesforce_adapter_loads_neither_zeep_lxml_nor_cryptography() -> None:
    out = _probe(
        "import sys\n"
        "import syncd.adapters.salesforce\n"
        "import simple_salesforce\n"
        f"print('LOADED', sorted(m for m in sys.modules if m.startswith({_HEAVY})))\n"
    )
    assert "LOADED []" in out, out


def test_a_jwt_is_signed_with_the_real_pyjwt() -> None:
    out = _probe(
        "import sys\n"
        "from syncd.adapters.lean_imports import jwt_module\n"
        "import syncd.adapters.salesforce\n"
        f"print('BEFORE', sorted(m for m in sys.modules if m.startswith({_HEAVY})))\n"
        "from cryptography.hazmat.primitives import serialization\n"
        "from cryptography.hazmat.primitives.asymmetric import rsa\n"
        "key = rsa.generate_private_key(public_exponent=65537, key_size=2048)\n"
        "pem = key.private_bytes(serialization.Encoding.PEM,\n"
        "    serialization.PrivateFormat.PKCS8, serialization.NoEncryption())\n"
        "public = key.public_key().public_bytes(serialization.Encoding.PEM,\n"
        "    serialization.PublicFormat.SubjectPublicKeyInfo)\n"
        "jwt = jwt_module()\n"
        "token = jwt.encode({'sub': 'u'}, pem, algorithm='RS256')\n"
        "print('CLAIMS', jwt.decode(token, public, algorithms=['RS256']))\n"
        "print('ERROR', issubclass(jwt.PyJWTError, Exception))\n"
    )
    assert "BEFORE []" in out, out
    assert "CLAIMS {'sub': 'u'}" in out, out
    assert "ERROR True" in out, out


def test_the_metadata_client_is_the_real_one_on_first_use() -> None:
    out = _probe(
        "import sys\n"
        "import syncd.adapters.salesforce\n"
        "from simple_salesforce.api import Salesforce\n"
        "print('ZEEP BEFORE', 'zeep' in sys.modules)\n"
        "sf = Salesforce(session_id='x', instance='example.my.salesforce.com')\n"
        "api = sf.mdapi\n"
        "print('TYPE', type(api).__module__, type(api).__name__)\n"
        "print('ZEEP AFTER', 'zeep' in sys.modules)\n"
        "print('SAME', sf.mdapi is api)\n"
    )
    assert "ZEEP BEFORE False" in out, out
    assert "TYPE simple_salesforce.metadata SfdcMetadataApi" in out, out
    assert "ZEEP AFTER True" in out, out
    assert "SAME True" in out, out


def test_nothing_is_deferred_once_simple_salesforce_is_loaded() -> None:
    out = _probe(
        "import sys\n"
        "import simple_salesforce\n"
        "from syncd.adapters import lean_imports\n"
        "lean_imports.defer()\n"
        "real = sys.modules['simple_salesforce.metadata'].SfdcMetadataApi\n"
        "print('REAL', real.__module__, 'jwt.algorithms' in sys.modules)\n"
    )
    assert "REAL simple_salesforce.metadata True" in out, out
