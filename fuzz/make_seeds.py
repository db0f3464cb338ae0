#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ from the text-format messages below.

Each seed is a small valid input of its fuzz target (see the header comment of
fuzz/<target>.cc for the input format), encoded with Debian's protoc. Run it from anywhere
after changing the seeds: python3 fuzz/make_seeds.py
"""

import pathlib
import struct
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def encode(message_type: str, text: str) -> bytes:
    """The binary encoding of `text` (protobuf text format) as `message_type`."""
    if message_type.startswith("ffibox.internal."):
        proto = ["--proto_path=.", "--proto_path=proto", "server/protocol/worker_protocol.proto"]
    else:
        proto = ["--proto_path=proto", "proto/ffibox/v1/ffibox.proto"]
    return subprocess.run(
        ["protoc", f"--encode={message_type}", *proto],
        input=text.encode(), cwd=ROOT, check=True, capture_output=True).stdout


def request_seed(options: int, signature: str, request: str) -> bytes:
    """request_validation_fuzzer input: options, uint16 length, Signature, Request."""
    sig = encode("ffibox.v1.Signature", signature)
    return bytes([options]) + struct.pack("<H", len(sig)) + sig + encode(
        "ffibox.v1.Request", request)


COMPARATOR = ("result { scalar: INT } params { pointer { pointee { scalar: INT } } } "
              "params { pointer { pointee { scalar: INT } } }")
PRINTF = "result { scalar: INT } params { scalar: CSTRING } variadic: true"
BLOCKS_CALL = r"""
  id: 3 call { function: 2
    args { pointer { block { block: 0 } } } args { pointer { block { block: 1 offset: 4 } } }
    blocks { data: "\001\000\000\000" direction: INOUT }
    blocks { size: 32 direction: OUT keep: true relocations { offset: 8 target { block: 0 } } }
    blocks { data: "abc" direction: IN } }"""
BLOCKS_SIGNATURE = "params { pointer { pointee { scalar: INT } } } params { scalar: POINTER }"
BITFIELD_STRUCT = """record { kind: STRUCT name: "s" pack: 1
    fields { name: "a" type { scalar: CHAR } }
    fields { name: "b" type { scalar: UINT } bit_width: 3 }
    fields { name: "c" type { array { element { scalar: DOUBLE } length: 2 } } }
    fields { type { scalar: INT } bit_width: 0 }
    fields { name: "u" type { record { kind: UNION
      fields { name: "i" type { scalar: INT } } fields { name: "f" type { scalar: FLOAT } } } } } }"""

# Batches call functions 1 (resolved by name), 2 (by address, live) and 3 (by address, gone).
BATCH_SIGNATURE = "result { scalar: INT } params { scalar: POINTER } params { scalar: INT }"
BATCH_MIXED = r"""
  id: 12 batch { calls { function: 1 args { pointer { block { block: 0 } } } args { int_value: 8 }
      blocks { size: 8 direction: OUT } }
    calls { function: 2 args { pointer { null: true } } args { int_value: 0 } timeout_ms: 500 }
    calls { function: 1 args { pointer { block { block: 1 offset: 2 } } } args { int_value: 3 }
      blocks { data: "abc" direction: IN }
      blocks { size: 16 direction: INOUT keep: true relocations { offset: 8 target { block: 0 } } } } }"""

REQUEST_SEEDS = {
    "load_library": (0, "", 'id: 1 load_library { path: "libm.so.6" }'),
    "resolve_cos": (0, "", """id: 2 resolve_function { library: 1 symbol: "cos"
        signature { result { scalar: DOUBLE } params { scalar: DOUBLE } } }"""),
    "resolve_by_address": (0, "", """id: 2 resolve_function {
        address { address: 140737488355328 generation: 1 }
        signature { params { function { params { scalar: INT } } } } }"""),
    "call_printf": (0, PRINTF, r"""id: 3 call { function: 1 args { bytes_value: "%d %s\n" }
        args { int_value: 3 } args { bytes_value: "x" }
        variadic_types { scalar: INT } variadic_types { scalar: CSTRING } set_errno: 0 }"""),
    "call_blocks": (0, BLOCKS_SIGNATURE, BLOCKS_CALL),
    "call_blocks_small_limits": (1, BLOCKS_SIGNATURE, BLOCKS_CALL),
    "get_layout_struct": (0, "", "id: 4 get_layout { type { %s } }" % BITFIELD_STRUCT),
    "open_environment": (6, "", """id: 1 open { call_timeout_ms: 1000
        environment { key: "LANG" value: "C.UTF-8" } environment { key: "LC_ALL" value: "C" } }"""),
    "read_memory_typed": (0, "", """id: 5 read_memory { address { address: 4096 generation: 1 }
        type { pointer { pointee { scalar: CSTRING } } } }"""),
    "write_memory_typed": (0, "", """id: 6 write_memory { address { address: 4096 generation: 1 }
        type { scalar: INT } value { int_value: -5 } }"""),
    "fill_memory": (0, "", "id: 7 fill_memory { address { address: 4096 } byte: 255 size: 8 }"),
    "copy_memory": (0, "", """id: 8 copy_memory { destination { address: 4096 }
        source { address: 8192 } size: 16 }"""),
    "lookup_symbol": (0, "", 'id: 9 lookup_symbol { library: 1 symbol: "errno" type { scalar: INT } }'),
    "define_callback": (0, "", "id: 10 define_callback { signature { %s } }" % COMPARATOR),
    "batch_mixed": (0, BATCH_SIGNATURE, BATCH_MIXED),
    "batch_mixed_small_limits": (1, BATCH_SIGNATURE, BATCH_MIXED),
    "batch_over_block_limit": (1, BATCH_SIGNATURE, r"""id: 13 batch { timeout_ms: 1000
        calls { function: 1 args { pointer { block { block: 0 } } } args { int_value: 40 }
          blocks { size: 40 direction: OUT } }
        calls { function: 2 args { pointer { block { block: 0 } } } args { int_value: 40 }
          blocks { size: 40 direction: INOUT } } }"""),
    # Deadlines summing past the server's largest (60 s in the fuzzer): the batch's is capped.
    "batch_deadlines": (0, BATCH_SIGNATURE, """id: 15 batch {
        calls { function: 1 args { pointer { null: true } } args { int_value: 1 } timeout_ms: 40000 }
        calls { function: 2 args { pointer { null: true } } args { int_value: 2 } timeout_ms: 30000 } }"""),
    "batch_stale": (0, BATCH_SIGNATURE, """id: 14 batch {
        calls { function: 1 args { pointer { null: true } } args { int_value: 1 } }
        calls { function: 3 args { pointer { null: true } } args { int_value: 2 } } }"""),
    "callback_return": (24, COMPARATOR, r"""id: 11 callback_return { invocation: 5
        result { int_value: -1 } pointees { arg: 0 data: "\001\000\000\000" } }"""),
}

# call_fuzzer also runs the call_* seeds above. Lasting addresses below 4 name the blocks
# the fuzzer prepares.
CALL_SEEDS = {
    "call_lasting": (0, "params { scalar: POINTER } params { scalar: POINTER }", r"""
        id: 4 call { function: 3
          args { pointer { block { block: 0 offset: 8 } } } args { pointer { block { block: 1 } } }
          blocks { size: 16 direction: INOUT at { address: 1 generation: 3 }
            relocations { offset: 0 target { block: 1 offset: 4 } } }
          blocks { data: "kept" direction: OUT keep: true }
          release { address: 2 generation: 3 } }"""),
    "call_records": (0, """result { record { kind: STRUCT
          fields { name: "x" type { scalar: DOUBLE } } fields { name: "y" type { scalar: DOUBLE } } } }
        params { record { kind: STRUCT fields { name: "c" type { scalar: CHAR } }
          fields { name: "b" type { scalar: UINT } bit_width: 7 } } }
        params { scalar: LONGDOUBLE } variadic: true""", r"""
        id: 5 call { function: 4
          args { aggregate { elements { int_value: 65 } elements { uint_value: 100 } } }
          args { float_value: 2.5 }
          args { raw: "0123456789abcdef01234567" }
          variadic_types { record { kind: UNION
            fields { name: "d" type { array { element { scalar: DOUBLE } length: 3 } } }
            fields { name: "i" type { scalar: INT } } } } }"""),
    "call_wide_string": (0, "result { scalar: CSTRING } params { scalar: WSTRING }", r"""
        id: 6 call { function: 5 args { text_value: "\303\251t\303\251" } capture_errno: true }"""),
}

FRAME_SEEDS = {
    "library": "response { id: 41 library { library: 3 } }",
    "function": "response { id: 41 function { function: 5 address { address: 4096 generation: 1 } } }",
    "callback": "response { id: 41 callback { callback: 9 address { address: 4096 generation: 1 } } }",
    "call": r"""response { id: 41 call { result { int_value: 3 }
        blocks { block: 0 data: "abcd" }
        blocks { block: 2 data: "0123456789abcdef"
          pointers { offset: 0 target { block: 1 offset: 8 } }
          pointers { offset: 8 target { block: 4 } } }
        blocks { block: 3 }
        blocks { block: 4 data: "0123456789abcdef01234567" }
        kept { block: 4 address { address: 4096 generation: 1 } }
        kept { block: 5 address { address: 8192 generation: 1 } } } }""",
    "call_plain": "response { id: 41 call { result { float_value: 0.5 } errno_value: 2 } }",
    "batch_plain": """response { id: 41 batch { results { result { int_value: 1 } }
        results { result { int_value: 2 } } results { result { int_value: 3 } } } }""",
    "batch": r"""response { id: 41 batch {
        results { result { int_value: 1 } }
        results { }
        results { blocks { block: 0 data: "abcd" }
          blocks { block: 1 data: "0123456789abcdef" pointers { offset: 8 target { block: 0 offset: 4 } } } }
        results { errno_value: 4 }
        results { blocks { block: 0 data: "0123456789abcdef01234567" } blocks { block: 2 }
          kept { block: 0 address { address: 4096 generation: 1 } }
          kept { block: 1 address { address: 8192 generation: 1 } } }
        results { blocks { block: 0 data: "01234567" }
          kept { block: 0 address { address: 12288 generation: 1 } } } } }""",
    "batch_failed": r"""response { id: 41 error { code: INVALID_ARGUMENT field: "batch.calls[2].args[0]"
          message: "batch.calls[2].args[0]: does not fit int" batch_index: 2 }
        batch { results { result { int_value: 1 } } results { } } }""",
    "batch_one": r"""response { id: 41 batch { results { blocks { block: 0 data: "0123456789abcdef" }
        kept { block: 0 address { address: 4096 generation: 1 } } } } }""",
    "memory": 'response { id: 41 memory { data: "0123456789abcdef" } }',
    "memory_typed": 'response { id: 41 memory { value { raw: "abcdefghijkl" } } }',
    "allocated": "response { id: 41 allocated { address { address: 4096 generation: 1 } } }",
    "string": 'response { id: 41 string { data: "hello" } }',
    "done": "response { id: 41 done {} }",
    "error": 'response { id: 41 error { code: WORKER_CRASHED message: "boom" signal: 11 } }',
    "invoke_int": "invoke { invocation: 1 callback: 9 args { int_value: 3 } }",
    "invoke_pointees": r"""invoke { invocation: 2 callback: 9
        args { pointer { remote { address: 4096 generation: 1 } } }
        args { pointer { remote { address: 8192 generation: 1 } } }
        args { pointer { null: true } } args { bytes_value: "hi" }
        pointees { arg: 0 data: "0123456789abcdef01234567" }
        pointees { arg: 1 data: "0123456789abcdef" }
        pointees { arg: 2 data: "01234567" } parent_invocation: 1 }""",
    "event": 'event { kind: CALLBACK_ERROR error { code: INVALID_ARGUMENT message: "x" } }',
}

MARSHAL_SEEDS = {
    "int": "type { scalar: INT } value { int_value: -42 }",
    "ulonglong": "type { scalar: ULONGLONG } value { uint_value: 18446744073709551615 }",
    "char_byte": 'type { scalar: CHAR } value { bytes_value: "\\377" }',
    "bool": "type { scalar: BOOL } value { int_value: 7 }",
    "float": "type { scalar: FLOAT } value { float_value: 0.1 }",
    "long_double": "type { scalar: LONGDOUBLE } value { float_value: 1e300 }",
    "cstring": 'type { scalar: CSTRING } value { bytes_value: "hello\\000world" }',
    "wstring": 'type { scalar: WSTRING } value { text_value: "h\\303\\251llo \\342\\230\\203" }',
    "pointer": """address { generation: 2 } type { pointer { pointee { scalar: INT } } }
        value { pointer { remote { address: 4096 generation: 2 } } }""",
    "function_null": "type { function { result { scalar: INT } } } value { pointer { null: true } }",
    "bit_fields": """type { record { kind: STRUCT
        fields { name: "a" type { scalar: CHAR } }
        fields { name: "b" type { scalar: INT } bit_width: 5 }
        fields { name: "c" type { scalar: UINT } bit_width: 27 }
        fields { type { scalar: INT } bit_width: 0 }
        fields { name: "d" type { scalar: SHORT } }
        fields { name: "ok" type { scalar: BOOL } bit_width: 1 } } }
      value { aggregate { elements { bytes_value: "x" } elements { int_value: -3 }
        elements { uint_value: 1000 } elements { } elements { int_value: 7 }
        elements { bool_value: true } } }""",
    "packed": """type { record { kind: STRUCT pack: 1
        fields { name: "c" type { scalar: CHAR } }
        fields { name: "d" type { scalar: DOUBLE } }
        fields { name: "x" type { scalar: LONGLONG } bit_width: 40 } } }
      value { aggregate { elements { int_value: 1 } elements { float_value: -2.5 }
        elements { int_value: -549755813888 } } }""",
    "union": """type { record { kind: UNION
        fields { name: "i" type { scalar: INT } } fields { name: "f" type { scalar: FLOAT } } } }
      value { aggregate { elements { int_value: 5 } } }""",
    "byte_array": 'type { array { element { scalar: UCHAR } length: 8 } } value { bytes_value: "abc" }',
    "struct_array": """type { array { length: 2 element { record { kind: STRUCT
        fields { name: "p" type { scalar: CSTRING } } fields { name: "n" type { scalar: SIZE_T } } } } } }
      value { aggregate {
        elements { aggregate { elements { bytes_value: "a" } elements { uint_value: 1 } } }
        elements { raw: "0123456789abcdef" } } }""",
    "long_double_struct": """type { record { kind: STRUCT
        fields { name: "x" type { scalar: LONGDOUBLE } } fields { name: "y" type { scalar: INT } } } }
      value { aggregate { elements { float_value: 3.25 } elements { int_value: 9 } } }""",
}

DECLARATIONS = {
    "cos": "double cos(double)",
    "printf": "int printf(const char*, ...)",
    "strncmp": "int strncmp(const char *s1, const char * restrict s2, size_t n);",
    "free": "void free(void *ptr)",
    "strtoull": "unsigned long long strtoull(const char *nptr, char **endptr, int base)",
    "wcscpy": "wchar_t *wcscpy(wchar_t *dest, const wchar_t *src)",
    "scalars": "_Bool f(signed char, unsigned short int, long double, int8_t, uint64_t, ssize_t)",
    "rand": "int rand(void)",
    "labs": "long int labs(long int)",
    "qualified": "const volatile unsigned char *p(void)",
    # The ParseDeclaration op's limits: more parameters than a call may have arguments,
    # and a declaration past its 4096-byte cap.
    "many_params": "int f(" + ", ".join(["int"] * 257) + ")",
    "overlong": "int f(int" + " " * 4096 + ")",
}


def write(target: str, name: str, data: bytes) -> None:
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def main() -> None:
    for name, (options, signature, request) in REQUEST_SEEDS.items():
        seed = request_seed(options, signature, request)
        write("request_validation_fuzzer", name, seed)
        if name.startswith("call_"):
            write("call_fuzzer", name, seed)
    for name, (options, signature, request) in CALL_SEEDS.items():
        write("call_fuzzer", name, request_seed(options, signature, request))
    for name, text in FRAME_SEEDS.items():
        write("worker_frame_fuzzer", name, encode("ffibox.internal.WorkerReply", text))
    for name, text in MARSHAL_SEEDS.items():
        write("marshal_fuzzer", name, encode("ffibox.v1.WriteMemory", text))
    for name, text in DECLARATIONS.items():
        write("c_declaration_fuzzer", name, text.encode())


if __name__ == "__main__":
    main()
