"""`moecl.Config`: derived book-choice defaults and clear errors for bad values."""

import json
import math

import numpy as np
import pytest

import moecl
from moecl.config import BOOK_CONSTANTS


def test_defaults_are_derived_from_sigma0():
    config = moecl.Config(sigma0=0.04)
    assert config.eta == pytest.approx(BOOK_CONSTANTS["eta"] * 0.04**0.5)
    assert config.alpha == pytest.approx(BOOK_CONSTANTS["alpha"] * 0.04**0.5)
    assert config.lambda_ == pytest.approx(BOOK_CONSTANTS["lambda_"] * 0.04**1.25)
    assert config.Gamma == pytest.approx(BOOK_CONSTANTS["Gamma"] * 0.04**1.25)
    assert config.T1 == math.ceil(config.M / config.eta)
    assert config.v_norm == pytest.approx(math.sqrt(config.d))


def test_explicit_values_are_kept_and_replace_rederives():
    config = moecl.Config(M=4, eta=0.5)
    assert config.eta == 0.5 and config.T1 == 8
    more = config.replace(M=6)  # eta given, T1 derived: T1 follows M
    assert more.eta == 0.5 and more.T1 == 12
    other = moecl.Config().replace(sigma0=0.25)  # derived fields follow sigma0
    assert other.eta == pytest.approx(0.5) and other.lambda_ == pytest.approx(0.25**1.25)
    assert moecl.Config(T1=3).replace(M=2).T1 == 3
    assert moecl.Config().replace(d=30).v_norm == pytest.approx(math.sqrt(30))
    assert moecl.Config().as_dict()["T1"] == moecl.Config().T1


def test_config_is_frozen():
    with pytest.raises(Exception):
        moecl.Config().M = 3


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"s": 20, "d": 20}, ["s=20", "d=20"]),
        ({"s": 25}, ["s=25"]),
        ({"M": 0}, ["M=0"]),
        ({"N": 0}, ["N=0"]),
        ({"T": 0}, ["T=0"]),
        ({"M": 2.5}, ["M=2.5", "integer"]),
        ({"N": True}, ["N=True"]),
        ({"lambda_": -0.1}, ["lambda_=-0.1"]),
        ({"eta": 0.0}, ["eta=0.0"]),
        ({"eta": -1.0}, ["eta=-1.0"]),
        ({"alpha": -1.0}, ["alpha=-1.0"]),
        ({"Gamma": float("nan")}, ["Gamma=nan", "finite"]),
        ({"sigma0": float("inf")}, ["sigma0=inf", "finite"]),
        ({"sigma0": 0.0}, ["sigma0=0.0"]),
        ({"beta": "big"}, ["beta='big'"]),
        ({"sigma_t": 0}, ["sigma_t=0"]),
        ({"v_norm": -2.0}, ["v_norm=-2.0"]),
        ({"T1": -1}, ["T1=-1"]),
        ({"K": 5}, ["K=5", "N=4"]),
        ({"K": 0}, ["K=0"]),
        ({"features": "gaussian"}, ["features='gaussian'"]),
        ({"termination": "early"}, ["termination='early'"]),
        ({"balance_loss": "kl"}, ["balance_loss='kl'"]),
        ({"router": "random"}, ["router='random'"]),
        ({"expert_update": "sgd"}, ["expert_update='sgd'"]),
        ({"gradient_steps": 0}, ["gradient_steps=0"]),
        ({"sharing": "copy"}, ["sharing='copy'"]),
        ({"reopen": "always"}, ["reopen='always'"]),
        ({"error_metric": "l1"}, ["error_metric='l1'"]),
        ({"drift_round": 0}, ["drift_round=0"]),
        ({"drift_round": 1000}, ["drift_round=1000", "T=1000"]),
        ({"drift_round": 10, "drift_count": 5}, ["drift_count=5", "N=4"]),
        ({"drift_count": 0}, ["drift_count=0"]),
        ({"reopen_threshold": -0.1}, ["reopen_threshold=-0.1"]),
        ({"reopen_patience": 0}, ["reopen_patience=0"]),
        ({"anisotropy": 0.5}, ["anisotropy=0.5"]),
    ],
)
def test_bad_values_name_the_parameter(changes, words):
    with pytest.raises(ValueError) as error:
        moecl.Config(**changes)
    for word in words:
        assert word in str(error.value)


def test_numpy_integers_are_accepted():
    assert moecl.Config(M=np.int64(3)).M == 3


def test_simulate_rejects_bad_arguments():
    config = moecl.Config(T=5)
    with pytest.raises(ValueError, match="config must be a moecl.Config"):
        moecl.simulate({"M": 2})
    with pytest.raises(ValueError, match="seed=-1"):
        moecl.simulate(config, seed=-1)
    with pytest.raises(ValueError, match="replicates=0"):
        moecl.simulate(config, replicates=0)
    with pytest.raises(ValueError, match="negative"):
        moecl.simulate(config, replicates=[0, -2])
    W = np.zeros((config.N, config.d))
    with pytest.raises(ValueError, match=r"pool.W has shape \(3, 20\)"):
        moecl.simulate(config, pool=(W[:3], W))
    with pytest.raises(ValueError, match="pool.V contains non-finite"):
        moecl.simulate(config, pool=(W, np.full_like(W, np.nan)))
    with pytest.raises(ValueError, match="pair"):
        moecl.simulate(config, pool=W)


def test_pool_size_counts_the_truths_that_arrive_with_drift():
    assert moecl.Config(N=4).pool_size == 4
    assert moecl.Config(N=4, drift_count=3).pool_size == 4  # no drift round: no new truths
    assert moecl.Config(N=4, T=100, drift_round=50, drift_count=3).pool_size == 7


@pytest.mark.parametrize("field, value", [("sigma0", "0.1"), ("M", "8"), ("T1", "3"), ("beta", b"1"),
                                          ("eta", "fast")])
def test_numbers_given_as_strings_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError) as error:
        moecl.Config(**{field: value})
    message = str(error.value)
    assert message.startswith(f"{field}={value!r}") and "string" in message or "bytes" in message


@pytest.mark.parametrize("field, value", [("termination", ["gap"]), ("features", {"a": 1}), ("router", 3)])
def test_choices_of_the_wrong_type_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}="):
        moecl.Config(**{field: value})


def test_as_dict_is_json_serialisable_even_from_numpy_scalars():
    config = moecl.Config(M=np.int64(3), T=np.int32(50), sigma0=np.float32(0.25), beta=np.float64(2.0),
                          K=np.int16(2), gradient_steps=np.uint8(3), drift_round=np.int64(10))
    fields = config.as_dict()
    assert json.loads(json.dumps(fields)) == fields
    assert type(fields["M"]) is int and type(fields["sigma0"]) is float and type(fields["K"]) is int
    assert moecl.Config(**fields) == config


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"gradient_steps": 10**9}, ["gradient_steps=1000000000", "at most 10_000"]),
        ({"T": 10**12}, ["T=1000000000000", "at most"]),
        ({"sigma0": 1e300}, ["sigma0=1e+300", "at most"]),
        ({"sigma0": 1e-300}, ["sigma0=1e-300", "at least"]),
        ({"beta": 1e200}, ["beta=1e+200"]),
        ({"sigma_t": 1e-300}, ["sigma_t=1e-300"]),
        ({"eta": 1e-300}, ["eta=1e-300"]),
        ({"cluster_spread": 1e300}, ["cluster_spread=1e+300"]),
        ({"T1": 10**30}, ["T1="]),
        ({"sigma0": 10**400}, ["sigma0="]),
    ],
)
def test_counts_and_scales_have_sane_bounds(changes, words):
    with pytest.raises(ValueError) as error:
        moecl.Config(**changes)
    for word in words:
        assert word in str(error.value)
