"""`moecl.reference.engine_agreement`: the number behind the findings' first row (book/setting.md)."""

import dataclasses

import numpy as np

import moecl
from moecl import reference


def test_engine_follows_the_loop_in_a_terminating_run():
    agreement = reference.engine_agreement(moecl.Config(M=8, T=150, sigma0=0.3), replicates=2, seed=3)
    assert agreement["replicates"] == 2 and agreement["rounds"] == 150
    assert agreement["integer_records"] >= 2 * 4  # tasks, experts, closest truths, gate flags, T2 per replicate
    assert agreement["integer_equal"] == agreement["integer_records"]
    assert agreement["routing_agreement"] == 1.0
    assert 0 <= agreement["max_relative"] < 1e-7 and agreement["worst"]


def test_a_changed_engine_is_measured_as_different(monkeypatch):
    """The measure is not blind: an engine that routes replicate 0 differently is caught."""
    real = moecl.simulation.simulate

    def shifted(config, replicates, seed):
        result = real(config, replicates=replicates, seed=seed)
        experts = np.asarray(result.experts).copy()
        experts[0, 100:] = (experts[0, 100:] + 1) % config.M
        return dataclasses.replace(result, experts=experts)

    monkeypatch.setattr(moecl.simulation, "simulate", shifted)
    agreement = reference.engine_agreement(moecl.Config(M=4, T=120, sigma0=0.3), replicates=2, seed=3)
    assert agreement["routing_agreement"] == 1 - 20 / 240  # rounds 101-120 of one of two replicates
    assert agreement["integer_equal"] < agreement["integer_records"]
