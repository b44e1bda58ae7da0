"""JSON on the record path: orjson, with the standard library where orjson refuses or rewrites.

Parsing the fetched record, serialising the questions to OPA and the response body are
the sidecar's biggest Python costs per view; orjson does each several times faster
(bench/overhead/PROFILE.md). orjson refuses integers beyond 64 bits, which a token's
claims may hold: those few values go through a small exact encoder instead, so odd but
valid input never becomes a 500.

**Numbers leave as they came** (`loads_fhir`). A FHIR decimal keeps its precision in its
text: `37.50` is not `37.5`, `1.2E+2` is not `120.0`, `0.12345678901234567` is not the
nearest double, and `1e400` is a legal decimal that no double holds. orjson reads every
number with a fraction or exponent as a double, reads integers beyond 64 bits as doubles,
writes `-0` back as `0`, and refuses `1e400`. So upstream FHIR bodies are read by
`loads_fhir`, which gives every number it cannot give back exactly a `JsonNumber`: a
`float` (so Python code may still compare it) that remembers its text, written back
byte for byte by `dumps` (orjson hands it to `_default`, which returns it as an
`orjson.Fragment`). Not a bare `orjson.Fragment`: a Fragment cannot be read back, compared,
copied (`copy.deepcopy` refuses it) or written by the standard-library fallback.

How, measured with `python -m sidecar.fastjson demo_upstream/residents/9990000018-margaret-thompson.json`
(her `$everything` as the demo upstream serves it: 46.6 KB compact, 49.6 KB with
`json.dumps`' default spacing; CPU time of the process, best of 7 × 2,000; Python 3.11,
orjson 3.13, the 2-core CI machine shared with other work, 2026-11-29, two runs):

    orjson.loads                                   111–123 µs  (rewrites numbers: not an option alone)
    orjson.dumps of the parsed answer               25 µs
    json.loads, no hooks                           217–232 µs  (the hooks add ≈ 3 µs: few numbers)
    a Python regex finding number tokens
      outside strings, to decide when to go slow  333–690 µs  (wall time; slower than parsing exactly)
    loads_fhir, compact, numbers in orjson's form  146–155 µs  (orjson, its round trip, a memcmp)
    loads_fhir, spaced (pretty-printed)            261–278 µs  (exact path straight away)
    loads_fhir, compact, one `1.50` in it          424–427 µs  (orjson tried, then the exact path)

Deciding cheaply whether orjson *would* change a number is the catch: any scan of the raw
bytes in Python costs more than the exact parse. What is cheap is orjson's own round trip:
when `orjson.dumps(orjson.loads(raw)) == raw` byte for byte, every number in the answer is
already written exactly as orjson writes it, so orjson's values are exact. That holds for
compact answers (HAPI without `_pretty`, the demo upstream) whose decimals are in shortest
form, the usual case; anything else — an escape orjson writes differently, a `37.50` —
takes the exact path too, having spent ≈ 140 µs on the attempt. An answer that visibly has
spacing (`": "` or a line break in its first KiB) skips the attempt.

The exact path keeps orjson's strictness: NaN and Infinity are refused, the body must be
UTF-8, lone surrogates are refused, and so is nesting deeper than 1024 — or, for a body
orjson has not read first (a spaced one, or one it refused for a number out of range),
deeper than orjson writes (254 levels, far beyond any FHIR resource). A compact body that
orjson reads (up to 1024 levels) but cannot write back (over 254) is refused the same way.
Every refusal is a ValueError, RecursionError included, so an upstream body the sidecar
cannot take is a 502, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_MAX_DEPTH = 1024
_I64_MIN, _U64_END = -(2**63), 2**64


class JsonNumber(float):
    """A JSON number read from an upstream answer, written back exactly as it was written.

    It is the nearest float for arithmetic and comparison (`1e400` is `inf`); `text` is
    the number as the upstream wrote it, which is what `dumps` writes.
    """

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> JsonNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __repr__(self) -> str:
        return f"JsonNumber({self.text!r})"

    def __reduce__(self) -> tuple[type[JsonNumber], tuple[str]]:
        return (JsonNumber, (self.text,))  # copy, deepcopy and pickle keep the text

    def __copy__(self) -> JsonNumber:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> JsonNumber:
        return self


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes; a `JsonNumber` is written as its text."""
    try:
        return orjson.dumps(value, default=_default)
    except TypeError:  # orjson.JSONEncodeError: e.g. an integer beyond 64 bits
        return "".join(_encode(value, [])).encode()


def loads(raw: bytes | str) -> Any:
    """Parse JSON; raises ValueError (orjson.JSONDecodeError) for anything that is not
    strict JSON: NaN, Infinity, lone surrogates, nesting deeper than 1024."""
    return orjson.loads(raw)


def loads_fhir(raw: bytes | str) -> Any:
    """Parse an upstream FHIR body keeping every number's text (see the module docstring).

    The same values as `loads`, except that a number orjson would not give back exactly
    is a `JsonNumber`; raises ValueError for what `loads` refuses.
    """
    if isinstance(raw, str):
        raw = raw.encode()
    try:
        head = raw[:1024]
        if b'": ' not in head and b"\n" not in head:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return _loads_exact(raw, checked=False)
            try:
                again = orjson.dumps(value)
            except orjson.JSONEncodeError as exc:
                # orjson reads 1024 levels but writes 254: a body between the two is refused
                # here, as the exact path refuses it (it was a TypeError, so a 500).
                raise ValueError(f"not strict JSON: {exc}") from None
            if again == raw:
                return value  # every number already in orjson's form: orjson's values are exact
            return _loads_exact(raw, checked=True)
        return _loads_exact(raw, checked=False)
    except RecursionError:
        # However deep the caller's own stack already is (a request thread under gunicorn
        # starts well below the top), too deep to read is a refusal, never a crash.
        raise ValueError("JSON nested too deeply") from None


def _loads_exact(raw: bytes, checked: bool) -> Any:
    """The standard library's parser with every float, and every integer orjson cannot
    hold or write back (`-0`, beyond 64 bits), as a `JsonNumber`.

    `checked`: orjson has already read `raw`, so its strictness holds; otherwise it is
    enforced here: strict UTF-8, no NaN/Infinity (refused while parsing), and orjson's
    writer refuses lone surrogates and nesting deeper than it writes (254 levels, far
    beyond any FHIR resource).
    """
    try:
        text = raw.decode("utf-8")  # strict: also refuses encoded surrogates
        value = json.loads(text, parse_float=JsonNumber, parse_int=_integer, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not checked:
        try:
            orjson.dumps(value, default=_default)
        except orjson.JSONEncodeError as exc:
            raise ValueError(f"not strict JSON: {exc}") from None
    return value


def _integer(text: str) -> int | JsonNumber:
    if len(text) <= 20 and text != "-0":
        number = int(text)
        if _I64_MIN <= number < _U64_END:
            return number
    return JsonNumber(text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _default(value: Any) -> Any:
    if isinstance(value, JsonNumber):
        return orjson.Fragment(value.text)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _encode(value: Any, out: list[str], depth: int = 0) -> list[str]:
    """Compact JSON for what orjson refuses to write (integers beyond 64 bits, nesting
    deeper than 254): containers and integers here, every other leaf as orjson writes it."""
    if depth > _MAX_DEPTH:
        raise ValueError("value nested too deeply to write as JSON")
    if isinstance(value, dict):
        out.append("{")
        for n, (key, item) in enumerate(value.items()):
            if n:
                out.append(",")
            # non-string keys as the standard library writes them (orjson refuses them)
            out.append(orjson.dumps(key if isinstance(key, str) else json.dumps(key).strip('"')).decode())
            out.append(":")
            _encode(item, out, depth + 1)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for n, item in enumerate(value):
            if n:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    elif isinstance(value, JsonNumber):
        out.append(value.text)
    elif isinstance(value, int) and not isinstance(value, bool):
        out.append(int.__repr__(value))
    else:
        out.append(orjson.dumps(value, default=_default).decode())
    return out


def _measure(path: str, rounds: int = 2000) -> None:  # pragma: no cover - a measurement, not the product
    """`python -m sidecar.fastjson <resident file>`: the figures in the module docstring.

    Serves the file the way the demo upstream does (`$everything`, compact) and times each
    way of reading it: CPU time of this process (other load on the machine barely moves
    it), best of 7.
    """
    import time
    import timeit

    from demo_upstream import create_app

    with open(path, encoding="utf-8") as fh:
        patient = next(e["resource"] for e in json.load(fh)["entry"] if e["resource"]["resourceType"] == "Patient")
    client = create_app({"TESTING": True}).test_client()
    compact = client.get(f"/fhir/Patient/{patient['id']}/$everything?_count=1000").get_data()
    spaced = json.dumps(json.loads(compact), ensure_ascii=False).encode()
    parsed = orjson.loads(compact)  # outside what is timed
    decimals = compact.replace(b'"value":', b'"value":1.50,"x":', 1)  # one number orjson would rewrite
    cases = {
        "orjson.loads (compact)": lambda: orjson.loads(compact),
        "orjson.dumps of the parsed answer": lambda: orjson.dumps(parsed),
        "json.loads, no hooks (spaced)": lambda: json.loads(spaced),
        "loads_fhir, compact, orjson's form": lambda: loads_fhir(compact),
        "loads_fhir, compact, a 1.50 in it": lambda: loads_fhir(decimals),
        "loads_fhir, spaced": lambda: loads_fhir(spaced),
    }
    print(f"{path}: $everything {len(compact)} bytes compact, {len(spaced)} spaced")
    for name, call in cases.items():
        best = min(timeit.Timer(call, timer=time.process_time).repeat(number=rounds, repeat=7)) / rounds
        print(f"  {name:40s} {best * 1e6:7.1f} µs")


if __name__ == "__main__":  # pragma: no cover
    import sys

    _measure(sys.argv[1])
