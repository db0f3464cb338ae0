"""Cases for test_debian_bindings.py: `python3 binding_cases.py [--ffibox] CASE` prints the case's
result as JSON, with the stdlib ctypes or with ffibox.ctypes swapped in before the binding is
imported (the one-import swap of a whole binding)."""
import json
import sys

if len(sys.argv) > 1 and sys.argv[1] == "--ffibox":
    del sys.argv[1]
    import ffibox.ctypes
    import ffibox.ctypes.util
    sys.modules["ctypes"] = ffibox.ctypes
    sys.modules["ctypes.util"] = ffibox.ctypes.util

SAMPLES = {
    "pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n",
    "png": bytes.fromhex("89504e470d0a1a0a0000000d494844520000001000000008080200000021c6a54d"),
    "gzip": bytes.fromhex("1f8b0800000000000203cb48cdc9c95728cf2fca49e1020077fd1c0d0c000000"),
    "python": b"#!/usr/bin/env python3\nimport sys\nprint(sys.argv)\n",
    "text": b"Hello, world. This is plain text.\n",
    "latin1": "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n".encode("latin-1"),
}
FILES = {"a.txt": b"alpha\n" * 50, "dir/b.bin": bytes(range(256)) * 40, "c.txt": b"gamma"}


# -- python3-magic: opaque cookie (c_void_p), c_char_p results, byref(c_size_t) out-param ------
def magic_from_buffer():
    import magic
    return {k: [magic.from_buffer(v), magic.from_buffer(v, mime=True)] for k, v in SAMPLES.items()}


def magic_objects():
    import magic
    enc = magic.Magic(mime_encoding=True)
    unz = magic.Magic(uncompress=True, mime=True)
    m = magic.Magic()
    before = m.getparam(magic.MAGIC_PARAM_BYTES_MAX)
    m.setparam(magic.MAGIC_PARAM_BYTES_MAX, 4096)
    return {"encoding": [enc.from_buffer(v) for v in SAMPLES.values()],
            "uncompress": unz.from_buffer(SAMPLES["gzip"]),
            "str input": magic.from_buffer("plain str\n"),
            "params": [before, m.getparam(magic.MAGIC_PARAM_BYTES_MAX),
                       m.getparam(magic.MAGIC_PARAM_NAME_MAX)],
            "compat": magic.detect_from_content(SAMPLES["png"]).mime_type}


def magic_error():
    import magic
    m = magic.Magic()        # keep it alive: its __del__ closes the cookie
    try:
        magic.magic_load(m.cookie, "/nonexistent.mgc")
    except magic.MagicException as e:
        return str(e.message)
    return "no error"


# -- python3-libarchive-c: CFUNCTYPE callbacks, c_void_p handles, POINTER(c_void_p) out-params --
def _listing(archive):
    import hashlib
    return [[e.pathname, e.size, e.isreg, e.mode & 0o777, e.mtime,
             hashlib.sha1(b"".join(e.get_blocks())).hexdigest()] for e in archive]


def _write(writer):
    for name, data in sorted(FILES.items()):
        writer.add_file_from_memory(name, len(data), data, mtime=1700000000)


def _custom_written(fmt, flt):
    import libarchive
    chunks = []
    with libarchive.custom_writer(lambda d: chunks.append(bytes(d)) or len(d), fmt, flt) as w:
        _write(w)
    return b"".join(chunks)


def libarchive_custom_writer():
    import io
    import tarfile
    blob = _custom_written("ustar", None)      # stdlib tarfile checks what the callback got
    with tarfile.open(fileobj=io.BytesIO(blob)) as t:
        return [[m.name, m.size, t.extractfile(m).read() == FILES[m.name]] for m in t]


def libarchive_memory_reader():
    import gzip
    import io
    import tarfile
    import libarchive
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in sorted(FILES.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            t.addfile(info, io.BytesIO(data))
    with libarchive.memory_reader(gzip.compress(buf.getvalue(), mtime=0)) as a:
        return _listing(a)


def libarchive_stream_reader():
    import io
    import libarchive
    blob = _custom_written("ustar", "gzip")
    with libarchive.stream_reader(io.BytesIO(blob)) as a:
        return _listing(a)


def libarchive_memory_writer():
    import libarchive
    buf = bytes(bytearray(1 << 16))
    with libarchive.memory_writer(buf, "zip") as w:
        _write(w)
    return buf[:4].hex()


# -- python3-ijson's yajl2 backend: a structure of CFUNCTYPE callbacks yajl keeps ------------
JSON = (b'{"name": "caf\xc3\xa9", "n": [1, -2, 3.5, 1e300, 12345678901234567890], '
        b'"ok": true, "no": false, "none": null, "deep": {"a": [{"b": ["x", {}]}]}, '
        b'"items": [' + b", ".join(b'{"id": %d, "tags": ["t%d", "u"]}' % (i, i)
                                 for i in range(300)) + b']}')


def ijson_yajl2_events():
    import io
    import ijson
    yajl2 = ijson.get_backend("yajl2")
    events = [[prefix, event, str(value)] for prefix, event, value in
              yajl2.parse(io.BytesIO(JSON), buf_size=1024)]
    return {"events": events[:40], "count": len(events),
            "ids": sum(item["id"] for item in yajl2.items(io.BytesIO(JSON), "items.item")),
            "kv": [[k, str(v)] for k, v in yajl2.kvitems(io.BytesIO(JSON), "")][:6]}


def ijson_yajl2_error():
    import io
    import ijson
    try:
        list(ijson.get_backend("yajl2").parse(io.BytesIO(b'{"a": [1, 2,, 3]}')))
    except Exception as e:  # noqa: BLE001 - the binding's own error, compared
        return "%s: %s" % (type(e).__name__, e)
    return "no error"


# -- python3-freetype: FreeType rewrites a face's glyph slot in place on each load -----------
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # fonts-dejavu-core


def freetype_glyphs():
    import freetype
    face = freetype.Face(FONT)
    face.set_char_size(24 * 64)
    glyphs = []
    for char in "Ag\u00e9":
        face.load_char(char)  # the slot face.glyph points to, rewritten; a new bitmap
        slot = face.glyph
        metrics, bitmap = slot.metrics, slot.bitmap
        glyphs.append([char, metrics.width, metrics.height, metrics.horiBearingX,
                       metrics.horiAdvance, slot.advance.x, slot.bitmap_left, slot.bitmap_top,
                       bitmap.width, bitmap.rows, bitmap.pitch, sum(bitmap.buffer)])
    return {"family": face.family_name.decode(), "style": face.style_name.decode(),
            "glyphs": face.num_glyphs, "size": face.size.x_ppem,
            "kerning": face.get_kerning("A", "V").x, "loaded": glyphs}


# -- python3-clang: libclang's own binding (struct results by value, callbacks given py_object
# client data, c_object_p handles it checks with isinstance, a c_char_p subclass for strings) --
CLANG_SOURCE = b"""#include <stddef.h>
#include <string.h>
#include "defs.h"

enum color { RED, GREEN = 5, BLUE };
typedef struct point { int x; double y; char tag[3]; } point_t;

/** Measures `text` from `at`. */
static size_t measure(const char* text, point_t* at) {
  return strlen(text) + (size_t)at->x + LIMIT;
}

int main(void) {
  point_t p = {1, 2.0, "ab"};
  enum color c = GREEN;
  return (int)measure("hello", &p) + c + missing_name;
}
"""
CLANG_UNSAVED = [("/src/unit.c", CLANG_SOURCE), ("/src/defs.h", b"#define LIMIT 4\n")]


def _clang_index():
    from clang import cindex
    return cindex, cindex.Index.create()


def clang_ast():
    cindex, index = _clang_index()
    unit = index.parse("/src/unit.c", args=["-std=c11"], unsaved_files=CLANG_UNSAVED)
    nodes = []
    for cursor in unit.cursor.walk_preorder():
        if cursor.location.file is None or cursor.location.file.name != "/src/unit.c":
            continue
        node = [str(cursor.kind).split(".")[1], cursor.spelling, cursor.type.spelling,
                cursor.location.line, cursor.location.column, cursor.is_definition()]
        if cursor.kind == cindex.CursorKind.STRUCT_DECL:
            node.append([[f.spelling, f.type.spelling, cursor.type.get_offset(f.spelling)]
                         for f in cursor.type.get_fields()])
            node.append([cursor.type.get_size(), cursor.type.get_align()])
        if cursor.kind == cindex.CursorKind.ENUM_CONSTANT_DECL:
            node.append(cursor.enum_value)
        if cursor.kind == cindex.CursorKind.FUNCTION_DECL:
            node.append([[a.spelling, a.type.spelling] for a in cursor.get_arguments()])
            node.append(cursor.result_type.spelling)
            node.append([cursor.raw_comment, cursor.brief_comment])  # None without one
        if cursor.kind == cindex.CursorKind.DECL_REF_EXPR and cursor.referenced is not None:
            node.append(cursor.referenced.location.line)
        nodes.append(node)
    return {
        "nodes": nodes,
        "diagnostics": [[d.severity, d.spelling, d.location.line, d.location.column]
                        for d in unit.diagnostics],
        "includes": sorted([i.depth, i.include.name] for i in unit.get_includes())[:6],
        "include_count": len(list(unit.get_includes())),
        "tokens": [t.spelling for t in unit.get_tokens(extent=unit.cursor.extent)
                   if t.location.file.name == "/src/unit.c"][:60],
    }


def clang_error():
    cindex, index = _clang_index()
    try:
        index.parse("/src/none.c", args=["-std=c11"])
    except cindex.TranslationUnitLoadError as error:
        return str(error)
    return "no error"


# -- python3-pycryptodome: its own C modules through ctypes (opaque state handles freed by
# __del__), pythonapi named at import (called only for bytearray and memoryview data, which
# these cases do not pass) ------------------------------------------------------------------
def pycryptodome_ciphers():
    from Cryptodome.Cipher import AES, ChaCha20_Poly1305
    from Cryptodome.Hash import HMAC, SHA256, SHA3_256
    from Cryptodome.Protocol.KDF import PBKDF2
    key, iv = bytes(range(16)), bytes(16)
    gcm = AES.new(key, AES.MODE_GCM, nonce=b"n" * 12)
    sealed, tag = gcm.encrypt_and_digest(b"gcm data")
    chacha = ChaCha20_Poly1305.new(key=key * 2, nonce=b"n" * 12)
    return {
        "cbc": AES.new(key, AES.MODE_CBC, iv=iv).encrypt(b"B" * 48).hex(),
        "gcm": [sealed.hex(), tag.hex()],
        "gcm open": AES.new(key, AES.MODE_GCM, nonce=b"n" * 12).decrypt_and_verify(
            sealed, tag).decode(),
        "chacha": [x.hex() for x in chacha.encrypt_and_digest(b"chacha")],
        "sha256": SHA256.new(b"abc").hexdigest(),
        "sha3": SHA3_256.new(b"abc").hexdigest(),
        "hmac": HMAC.new(b"key", b"msg", SHA256).hexdigest(),
        "pbkdf2": PBKDF2(b"pw", b"salt", 32, count=1000, hmac_hash_module=SHA256).hex(),
    }


def pycryptodome_errors():
    from Cryptodome.Cipher import AES
    key = bytes(range(16))
    errors = []
    for attempt in (lambda: AES.new(b"short", AES.MODE_ECB),
                    lambda: AES.new(key, AES.MODE_CBC, iv=bytes(16)).encrypt(b"123"),
                    lambda: AES.new(key, AES.MODE_GCM, nonce=b"n" * 12).decrypt_and_verify(
                        b"x", bytes(16))):
        try:
            attempt()
            errors.append("no error")
        except ValueError as e:
            errors.append(str(e))
    return errors


CASES = {f.__name__: f for f in (
    magic_from_buffer, magic_objects, magic_error, libarchive_custom_writer,
    libarchive_memory_reader, libarchive_stream_reader, libarchive_memory_writer,
    ijson_yajl2_events, ijson_yajl2_error, freetype_glyphs, clang_ast, clang_error,
    pycryptodome_ciphers, pycryptodome_errors)}

if __name__ == "__main__":
    try:
        result = {"ok": CASES[sys.argv[1]]()}
    except Exception as e:  # the exception's type and text are part of the result
        result = {"error": "%s: %s" % (type(e).__name__, e)}
    print(json.dumps(result, sort_keys=True))
