"""_lib.py must declare every function, struct field and error code of include/carbonlite.h."""
import ctypes
import re

from carbonlite import _lib

from conftest import ROOT

HEADER = (ROOT / "include" / "carbonlite.h").read_text()
# Comments out, so prose mentioning a function is not taken for a prototype.
CODE = re.sub(r"/\*.*?\*/", "", HEADER, flags=re.S)
CODE = re.sub(r"//[^\n]*", "", CODE)

C_TYPES = {
    "void": None,
    "int": ctypes.c_int,
    "int64_t": ctypes.c_int64,
    "uint64_t": ctypes.c_uint64,
    "size_t": ctypes.c_size_t,
    "double": ctypes.c_double,
    "const char *": ctypes.c_char_p,
    "carbon *": _lib.CarbonPtr,
    "whisper_series *": ctypes.POINTER(_lib.WhisperSeries),
    "carbon_counters *": ctypes.POINTER(_lib.CarbonCounters),
    "carbon_add_result *": ctypes.POINTER(_lib.CarbonAddResult),
    "double *": ctypes.POINTER(ctypes.c_double),
    "carbon_find_list *": ctypes.POINTER(_lib.CarbonFindList),
    "carbon_destination_counters *": ctypes.POINTER(_lib.CarbonDestinationCounters),
}


def c_type(decl):
    """'const char *name' -> ctypes type; 'void' -> None."""
    decl = " ".join(decl.split())
    m = re.match(r"(.*?)(\w+)$", decl)
    ty = m.group(1).strip() if m and m.group(1).strip() else decl
    ty = re.sub(r"\s*\*", " *", ty)
    return C_TYPES[ty]


def prototypes():
    out = {}
    for m in re.finditer(r"^([\w ]+?\**)\s*\b(\w+)\(([^)]*)\);", CODE, flags=re.M):
        ret, name, args = m.groups()
        args = [] if args.strip() == "void" else [a.strip() for a in args.split(",")]
        out[name] = (C_TYPES[re.sub(r"\s*\*", " *", ret.strip())], [c_type(a) for a in args])
    return out


def test_every_function_is_declared_with_its_types():
    protos = prototypes()
    assert len(protos) >= 13, protos
    assert sorted(protos) == sorted(_lib.FUNCTIONS), "header and _lib.FUNCTIONS differ"
    for name, (ret, args) in protos.items():
        fn = getattr(_lib.lib, name)
        assert fn.restype == ret, name
        assert list(fn.argtypes) == args, name


def test_structs_match_the_header():
    for c_name, cls in [
        ("carbon_add_result", _lib.CarbonAddResult),
        ("whisper_series", _lib.WhisperSeries),
        ("carbon_counters", _lib.CarbonCounters),
    ]:
        body = re.search(r"typedef struct \{([^}]*)\} %s;" % c_name, CODE).group(1)
        fields = [f.strip() for f in body.split(";") if f.strip()]
        want = [(c_type(f), f.split()[-1].lstrip("*")) for f in fields]
        got = [(t, n.rstrip("_")) for n, t in cls._fields_]
        assert [n for _, n in got] == [n for _, n in want], c_name
        for (gt, n), (wt, _) in zip(got, want):
            assert gt == wt, (c_name, n)


def test_error_codes_match_the_header():
    body = re.search(r"typedef enum \{([^}]*)\} carbon_error;", CODE).group(1)
    codes = {n: int(v) for n, v in re.findall(r"(CARBON_\w+)\s*=\s*(-?\d+)", body)}
    assert codes == _lib.ERROR_CODES


def test_library_releases_the_gil():
    # CDLL (not PyDLL) calls drop the GIL around each foreign call.
    assert not _lib.lib._func_flags_ & ctypes._FUNCFLAG_PYTHONAPI
