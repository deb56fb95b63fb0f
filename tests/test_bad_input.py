"""Malformed configs, generated systematically (hypothesis): every one gets exit status 2,
one line naming the key and what was expected, no traceback, and nothing written.

Each strategy breaks a valid config (configs/base.toml) in one way and knows which key the
message must name. The module counts the distinct malformed inputs tried and prints the
count at the end (``-s`` shows it; the closing note of the reliability issue quotes it).
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path

import pytest
from helpers import CONFIGS_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcsim import cli, load_config
from mcsim.parameters import REQUIRED

# version 1's full config: every one of the 33 required names is in it (base.toml, version
# 2, gives three of them in their version-2 forms)
BASE_TEXT = (CONFIGS_DIR / "v1_base.toml").read_text(encoding="utf-8")
BASE = tomllib.loads(BASE_TEXT)
TRIED: set[bytes] = set()
EXAMPLES = 150  # per strategy; ten strategies


# --- a small TOML writer for the mutated dicts -------------------------------------------

def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _value(k)


def dumps(config: dict) -> str:
    lines = [f"{_key(k)} = {_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for table, body in config.items():
        if isinstance(body, dict):
            lines.append(f"[{_key(table)}]")
            lines += [f"{_key(k)} = {_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


# --- strategies: (file bytes, key the message must name) ----------------------------------

PARAMS = sorted(BASE["parameters"])
DISTS = [n for n in PARAMS if isinstance(BASE["parameters"][n], dict)]
CONSTS = [n for n in PARAMS if not isinstance(BASE["parameters"][n], dict)]
WRONG_TYPES = st.sampled_from(["abc", [1, 2], True, {"x": 1}, ["2024-01"]])


def _leaves(config: dict) -> list[tuple[str, ...]]:
    out = []
    for table, body in config.items():
        for k, v in body.items():
            if isinstance(v, dict):
                out += [(table, k, f) for f in v]
            else:
                out.append((table, k))
    return out


def _set(config: dict, path: tuple[str, ...], value) -> dict:
    c = copy.deepcopy(config)
    node = c
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return c


def _encoded(config: dict, key: str):
    return dumps(config).encode(), key


@st.composite
def wrong_type(draw):
    path = draw(st.sampled_from([p for p in _leaves(BASE) if p[-1] != "pairs"]))
    original = BASE
    for p in path:
        original = original[p]
    value = draw(WRONG_TYPES.filter(lambda v: type(v) is not type(original)))
    if path[-1] == "recoup_from" and isinstance(value, list):
        value = [3]
    return _encoded(_set(BASE, path, value), ".".join(path[:2]))


@st.composite
def missing_key(draw):
    required = [("simulation", "start"), ("simulation", "horizon"), ("deal", "investment")]
    required += [("parameters", n) for n in REQUIRED]
    required += [("parameters", n, f) for n in DISTS for f in BASE["parameters"][n]
                 if f not in ("min", "max")]  # truncation bounds are optional
    path = draw(st.sampled_from(required))
    c = copy.deepcopy(BASE)
    node = c
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]
    if path[0] == "parameters" and len(path) == 2:  # a pair naming it would fail first
        c["parameter_correlation"]["pairs"] = [
            p for p in c["parameter_correlation"]["pairs"] if path[1] not in p[:2]]
    key = ".".join(path[:2]) if len(path) == 3 else ".".join(path)
    return _encoded(c, key)


@st.composite
def unknown_key(draw):
    table = draw(st.sampled_from(["simulation", "parameters", "deal", None]))
    name = draw(st.from_regex(r"zz[a-z_]{1,10}", fullmatch=True))
    c = copy.deepcopy(BASE)
    if table is None:
        c = {name: 1, **c}
        return _encoded(c, name)
    if table == "parameters" and draw(st.booleans()):  # a field inside a distribution
        p = draw(st.sampled_from(DISTS))
        c["parameters"][p][name] = 1.0
        return _encoded(c, f"parameters.{p}")
    c[table][name] = 1.0
    return _encoded(c, name)


@st.composite
def impossible_distribution(draw):
    p = draw(st.sampled_from(DISTS + ["utilization_0", "conversion_0"]))
    x = st.floats(0.01, 100.0)
    kind = draw(st.sampled_from(["normal_sd", "lognormal_p", "uniform", "pert", "beta",
                                 "triangular", "probability", "trunc"]))
    if kind == "normal_sd":
        spec = {"dist": "normal", "mean": draw(x), "sd": -draw(x)}
    elif kind == "lognormal_p":
        lo = draw(x)
        spec = {"dist": "lognormal", "p5": lo, "p95": lo * draw(st.floats(0.1, 1.0))}
    elif kind == "uniform":
        lo = draw(x)
        spec = {"dist": "uniform", "low": lo, "high": lo - draw(x)}
    elif kind == "pert":
        lo, hi = draw(x), draw(x)
        spec = {"dist": "pert", "low": max(lo, hi), "mode": (lo + hi) / 2,
                "high": min(lo, hi) - 1e-3}
    elif kind == "beta":
        spec = {"dist": "beta", "alpha": -draw(st.floats(0.0, 5.0)), "beta": draw(x)}
    elif kind == "triangular":
        lo = draw(x)
        spec = {"dist": "triangular", "low": lo, "mode": lo + 10.0 + draw(x),
                "high": lo + 5.0}
    elif kind == "probability":
        p = draw(st.sampled_from(["utilization_0", "conversion_0", "utilization_mean",
                                  "api_token_share", "azure_share_0"]))
        value = draw(st.one_of(st.floats(1.0, 1e6, exclude_min=True),
                               st.floats(-1e6, 0.0, exclude_max=True)))
        return _encoded(_set(BASE, ("parameters", p), value), f"parameters.{p}")
    else:
        spec = {"dist": "normal", "mean": 1.0, "sd": 1.0, "min": 2.0 + draw(x), "max": 1.5}
    return _encoded(_set(BASE, ("parameters", p), spec), f"parameters.{p}")


@st.composite
def bad_correlation(draw):
    pairs = copy.deepcopy(BASE["parameter_correlation"]["pairs"])
    kind = draw(st.sampled_from(["rho", "indefinite", "unknown", "constant", "self"]))
    if kind == "rho":
        i = draw(st.integers(0, len(pairs) - 1))
        pairs[i][2] = draw(st.one_of(st.floats(1.0001, 50.0), st.floats(-50.0, -1.0001)))
    elif kind == "indefinite":
        a, b, c = draw(st.permutations(["users_growth", "training_growth",
                                        "other_opex_growth"]))
        r = draw(st.floats(0.8, 0.99))
        pairs += [[a, b, r], [b, c, r], [a, c, -r]]
    elif kind == "unknown":
        pairs.append(["tokens_0", draw(st.from_regex(r"zz[a-z]{1,8}", fullmatch=True)), 0.2])
    elif kind == "constant":
        pairs.append(["tokens_0", draw(st.sampled_from(CONSTS)), 0.2])
    else:
        p = draw(st.sampled_from(DISTS))
        pairs.append([p, p, 0.5])
    return _encoded(_set(BASE, ("parameter_correlation", "pairs"), pairs),
                    "parameter_correlation")


@st.composite
def bad_month(draw):
    key = draw(st.sampled_from(["start", "horizon", "revenue_share_end"]))
    value = draw(st.one_of(
        st.from_regex(r"20[0-9]{2}-(1[3-9]|00)", fullmatch=True),
        st.from_regex(r"[0-9]{2}-[0-9]{2}", fullmatch=True),
        st.from_regex(r"20[0-9]{2}/0[1-9]", fullmatch=True),
        st.sampled_from(["2023-12", "1999-01", "3000-01", "", "2024-1", "next year"])))
    if key == "horizon" and value in ("3000-01",):
        value = "2023-12"
    table = "deal" if key == "revenue_share_end" else "simulation"
    if key != "horizon" and value in ("2023-12", "1999-01", "3000-01"):
        # valid months elsewhere: move the horizon before the start instead
        key, value, table = "horizon", "2023-12", "simulation"
    return _encoded(_set(BASE, (table, key), value), f"{table}.{key}")


@st.composite
def absurd_size(draw):
    key, value = draw(st.one_of(
        # (an integer-valued float such as 1e6 is a valid count: only others are absurd)
        st.tuples(st.just("paths"), st.one_of(
            st.integers(-10**6, 0), st.integers(2**32 + 1, 2**62),
            st.floats(1.5, 1e30).filter(lambda x: not x.is_integer() or x > 2**32))),
        st.tuples(st.just("seed"), st.one_of(
            st.integers(-10**9, -1), st.integers(2**63, 2**63 + 10**6),
            st.floats(0.5, 1e9).filter(lambda x: not x.is_integer()))),
        st.tuples(st.just("chunk_size"), st.one_of(st.integers(-10, 0),
                                                   st.integers(2**26 + 1, 2**40)))))
    return _encoded(_set(BASE, ("simulation", key), value), f"simulation.{key}")


@st.composite
def not_utf8(draw):
    data = bytearray(BASE_TEXT.encode())
    at = draw(st.integers(0, len(data)))
    bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\x80abc", b"\xfe\xfe"]))
    return bytes(data[:at] + bad + data[at:]), "<file>"


@st.composite
def truncated(draw):
    data = BASE_TEXT.encode()
    # cut before the one required key of the last table, so no cut is a valid config
    at = draw(st.integers(1, data.index(b"investment")))
    return data[:at], None  # TOML syntax or a missing key: either is named


#: version 3's keys, all valid (MODEL.md E-G): what ``bad_v3`` breaks one of
V3 = {"funding": {"cash_0": {"dist": "uniform", "low": 5e9, "high": 15e9},
                  "rounds": [["2024-10", 6.6e9], ["2025-04", 10e9]]},
      "discount_rate": "8%/yr",
      "equity": {"microsoft_equity_stake": 0.27, "valuation_multiple": 10.0}}
NOT_A_NUMBER = st.sampled_from(["abc", "1e9", [1.0], True, False, {"x": 1.0}, math.nan,
                                math.inf, -math.inf])


def _with_v3(**changes) -> dict:
    """The base config with every version-3 key (``changes`` replace them by name)."""
    c = copy.deepcopy(BASE)
    v3 = {**copy.deepcopy(V3), **changes}
    c["simulation"]["discount_rate"] = v3["discount_rate"]
    c["parameters"].update(v3["equity"])
    c["funding"] = v3["funding"]
    return c


@st.composite
def bad_v3(draw):
    """One version-3 key broken: cash_0 (negative, not a number, a distribution reaching
    below 0), the rounds (not a list, a pair of the wrong shape, a month malformed or outside
    the run or out of order, dollars negative or not a number), an unknown [funding] key,
    the discount rate (negative, not a rate), the equity stake outside [0, 1], a multiple
    <= 0, half of the pair."""
    start, horizon = BASE["simulation"]["start"], BASE["simulation"]["horizon"]
    kind = draw(st.sampled_from(["cash_0", "cash_0_dist", "rounds", "pair", "month", "order",
                                 "dollars", "funding_key", "discount", "stake", "multiple",
                                 "half"]))
    fund = copy.deepcopy(V3["funding"])
    if kind == "cash_0":
        fund["cash_0"] = draw(st.one_of(NOT_A_NUMBER, st.floats(-1e300, -1e-300)))
        return _encoded(_with_v3(funding=fund), "funding.cash_0")
    if kind == "cash_0_dist":
        lo = draw(st.floats(-1e12, -1.0))
        fund["cash_0"] = draw(st.sampled_from([
            {"dist": "uniform", "low": lo, "high": 1e10},
            {"dist": "normal", "mean": 1e10, "sd": -lo},
            {"dist": "normal", "mean": 1e10, "sd": 1e9, "min": lo}]))
        return _encoded(_with_v3(funding=fund), "funding.cash_0")
    if kind == "rounds":
        fund["rounds"] = draw(st.one_of(NOT_A_NUMBER.filter(lambda v: not isinstance(v, list)),
                                        st.just("2024-10")))
        return _encoded(_with_v3(funding=fund), "funding.rounds")
    i = draw(st.integers(0, 1))
    if kind == "pair":
        fund["rounds"][i] = draw(st.sampled_from([
            [], ["2024-10"], ["2024-10", 1.0, 2.0], "2024-10", 6.6e9, {"x": 1.0}]))
        return _encoded(_with_v3(funding=fund), f"funding.rounds[{i}]")
    if kind == "month":
        fund["rounds"][i][0] = draw(st.one_of(
            st.from_regex(r"20[0-9]{2}-(1[3-9]|00)", fullmatch=True),
            st.from_regex(r"20[0-9]{2}/0[1-9]", fullmatch=True),
            st.sampled_from(["", "2024-1", "Oct 2024", "2024-10-01", 202410, 6.6e9,
                             "1999-01", "2999-12"]),
            st.just(start[:4] + "-00"),
            # just outside the run: the month before the start, the one after the horizon
            st.just(f"{int(start[:4]) - 1}-12" if start[5:] == "01" else "1900-01"),
            st.just(f"{int(horizon[:4]) + 1}-01" if horizon[5:] == "12" else "2999-01")))
        return _encoded(_with_v3(funding=fund), f"funding.rounds[{i}][0]")
    if kind == "order":
        fund["rounds"][1][0] = draw(st.sampled_from(["2024-10", "2024-09", start]))
        return _encoded(_with_v3(funding=fund), "funding.rounds[1][0]")
    if kind == "dollars":
        fund["rounds"][i][1] = draw(st.one_of(NOT_A_NUMBER, st.floats(-1e300, -1e-300)))
        return _encoded(_with_v3(funding=fund), f"funding.rounds[{i}][1]")
    if kind == "funding_key":
        name = draw(st.from_regex(r"zz[a-z_]{1,10}", fullmatch=True))
        fund[name] = 1.0
        return _encoded(_with_v3(funding=fund), f"funding.{name}")
    if kind == "discount":
        rate = draw(st.one_of(NOT_A_NUMBER, st.floats(-1e300, -1e-300),
                              st.sampled_from(["-5%/yr", "-100%/yr", "8%", "1e400%/yr"])))
        return _encoded(_with_v3(discount_rate=rate), "simulation.discount_rate")
    equity = dict(V3["equity"])
    if kind == "stake":
        equity["microsoft_equity_stake"] = draw(st.one_of(
            NOT_A_NUMBER, st.floats(1.0, 1e300, exclude_min=True),
            st.floats(-1e300, 0.0, exclude_max=True)))
        return _encoded(_with_v3(equity=equity), "parameters.microsoft_equity_stake")
    if kind == "multiple":
        equity["valuation_multiple"] = draw(st.one_of(NOT_A_NUMBER, st.floats(-1e300, 0.0)))
        return _encoded(_with_v3(equity=equity), "parameters.valuation_multiple")
    dropped = draw(st.sampled_from(sorted(equity)))  # the error names the one missing
    del equity[dropped]
    return _encoded(_with_v3(equity=equity), f"parameters.{dropped}")


STRATEGIES = {"wrong_type": wrong_type(), "missing_key": missing_key(),
              "unknown_key": unknown_key(), "impossible_distribution": impossible_distribution(),
              "bad_correlation": bad_correlation(), "bad_month": bad_month(),
              "absurd_size": absurd_size(), "not_utf8": not_utf8(), "truncated": truncated(),
              "bad_v3": bad_v3()}


@pytest.fixture(scope="module", autouse=True)
def report_count():
    yield
    print(f"\n{len(TRIED)} distinct malformed configs tried")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_malformed_config_fails_cleanly(name, tmp_path_factory, capsys):
    work = tmp_path_factory.mktemp(name)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(STRATEGIES[name])
    def check(case):
        data, key = case
        TRIED.add(data)
        path = work / "bad.toml"
        path.write_bytes(data)
        out = work / "out"
        capsys.readouterr()
        # validate first: a mutation that broke nothing must fail here, not start a run
        assert cli.main(["validate", str(path)]) == cli.EXIT_BAD_INPUT, data
        capsys.readouterr()
        status = cli.main(["run", str(path), "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err
        assert status == cli.EXIT_BAD_INPUT, (data[:200], err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mcsim: error: "), err
        assert "Traceback" not in err and "expected" in lines[0]
        if key is not None:
            assert key in lines[0], (key, lines[0])
        assert not out.exists()
        assert not any(p.name.startswith(".") for p in work.iterdir())  # no temp dirs left

    check()


def test_the_base_config_itself_is_valid(tmp_path):
    """The strategies break a valid config: the breakage, not the base, is what fails (the
    base with every version-3 key too)."""
    path = Path(CONFIGS_DIR / "base.toml")
    assert tomllib.loads(dumps(BASE)) == BASE
    load_config(path)
    v3 = tmp_path / "v3.toml"
    v3.write_text(dumps(_with_v3()), encoding="utf-8")
    config = load_config(v3)
    assert config.funding is not None and config.simulation.discount_rate > 0
    assert config.parameters["microsoft_equity_stake"] == 0.27
