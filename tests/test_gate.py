"""The gate: Eq. (1)-(3), the losses Eq. (6)-(7), their gradients and the step Eq. (9)."""

import numpy as np
import pytest
import torch

from moecl import gate


def _random_gate(seed, R=5, M=6, d=9):
    rng = np.random.default_rng(seed)
    theta = 0.3 * rng.standard_normal((R, M, d))
    X = rng.standard_normal((R, d, 4))
    chosen = rng.integers(0, M, size=R)
    change_norm = rng.random(R) + 0.1
    counts = rng.integers(1, 10, size=(R, M)).astype(float)
    t = 17
    frequency = counts / t
    return theta, X, chosen, change_norm, frequency, t


def _torch_losses(theta, xbar, chosen, change_norm, frequency, alpha, t):
    """Eq. (1), (3), (6), (7) written directly in torch, float64."""
    h = torch.einsum("rmd,rd->rm", theta, xbar)
    pi = torch.softmax(h, dim=-1)
    M = theta.shape[1]
    locality = pi[torch.arange(len(chosen)), chosen] * change_norm
    aux = alpha * M / t * torch.sum(frequency * pi, dim=-1)
    return locality, aux


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_equal_autograd(seed):
    theta, X, chosen, change_norm, frequency, t = _random_gate(seed)
    alpha = 0.7
    xbar = gate.gate_input(X)
    theta_t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    locality, aux = _torch_losses(
        theta_t, torch.tensor(xbar), torch.tensor(chosen), torch.tensor(change_norm), torch.tensor(frequency), alpha, t
    )
    (grad_locality,) = torch.autograd.grad(locality.sum(), theta_t, retain_graph=True)
    (grad_aux,) = torch.autograd.grad(aux.sum(), theta_t)

    pi = gate.softmax(gate.gate_values(theta, xbar))
    np.testing.assert_allclose(gate.locality_loss(pi, chosen, change_norm), locality.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(gate.load_balance_loss(pi, frequency, alpha, t), aux.detach().numpy(), atol=1e-12)
    c_loc = gate.locality_grad(pi, chosen, change_norm)
    c_aux = gate.load_balance_grad(pi, frequency, alpha, t)
    np.testing.assert_allclose(c_loc[..., None] * xbar[:, None, :], grad_locality.numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(c_aux[..., None] * xbar[:, None, :], grad_aux.numpy(), atol=1e-10, rtol=0)


def test_gate_step_is_eq9():
    theta, X, chosen, change_norm, frequency, t = _random_gate(3)
    xbar = gate.gate_input(X)
    pi = gate.softmax(gate.gate_values(theta, xbar))
    c = gate.locality_grad(pi, chosen, change_norm) + gate.load_balance_grad(pi, frequency, 0.5, t)
    eta = 0.2
    expected = theta - eta * np.einsum("rm,rd->rmd", c, xbar)
    np.testing.assert_allclose(gate.gate_step(theta, c, xbar, eta), expected, atol=1e-15)
    inplace = theta.copy()
    result = gate.gate_step(inplace, c, xbar, eta, out=inplace)
    assert result is inplace
    np.testing.assert_allclose(inplace, expected, atol=1e-15)


def test_gate_values_and_softmax():
    theta, X, *_ = _random_gate(4)
    xbar = gate.gate_input(X)
    np.testing.assert_allclose(xbar, X.sum(axis=-1))
    h = gate.gate_values(theta, xbar)
    np.testing.assert_allclose(h[2, 3], theta[2, 3] @ xbar[2], atol=1e-12)
    pi = gate.softmax(h)
    np.testing.assert_allclose(pi.sum(axis=-1), 1.0)
    np.testing.assert_allclose(pi, torch.softmax(torch.tensor(h), -1).numpy(), atol=1e-15)
    # Large gate values do not overflow.
    assert np.all(np.isfinite(gate.softmax(np.array([1000.0, 0.0, -1000.0]))))


def test_route_is_argmax_of_values_plus_noise():
    h = np.array([[0.0, 0.5, 0.2], [1.0, 0.0, 0.0]])
    assert gate.route(h, np.zeros_like(h)).tolist() == [1, 0]
    noise = np.array([[0.9, 0.0, 0.0], [0.0, 0.0, 1.5]])
    assert gate.route(h, noise).tolist() == [0, 2]
    rng = np.random.default_rng(5)
    h, noise = rng.standard_normal((2, 100, 7))
    np.testing.assert_array_equal(gate.route(h, noise), [np.argmax(a + b) for a, b in zip(h, noise)])


def test_gap_termination_clears_flags_after_T1_only():
    rule = gate.TERMINATION_RULES["gap"]
    flags = rule.initial_flags((1, 3))
    h = np.array([[0.0, 0.05, 1.0]])
    # Rounds up to T1 never clear flags.
    same, stop = rule.update(flags, h, np.array([0]), t=5, T1=5, Gamma=0.1)
    assert same.all() and not stop.any()
    # Experts 0 and 1 are within Gamma of the chosen expert 0; expert 2 is not.
    flags, stop = rule.update(flags, h, np.array([0]), t=6, T1=5, Gamma=0.1)
    assert flags.tolist() == [[False, False, True]] and not stop.any()
    flags, stop = rule.update(flags, h, np.array([2]), t=7, T1=5, Gamma=0.1)
    assert not flags.any() and stop.all()


def test_no_termination_never_stops():
    rule = gate.TERMINATION_RULES["none"]
    flags = rule.initial_flags((2, 3))
    flags, stop = rule.update(flags, np.zeros((2, 3)), np.array([0, 1]), t=100, T1=5, Gamma=1.0)
    assert not stop.any()


@pytest.mark.parametrize("seed", [0, 1])
def test_entropy_gradient_equals_autograd(seed):
    theta, X, *_ = _random_gate(seed)
    xbar = gate.gate_input(X)
    alpha = 0.4
    theta_t = torch.tensor(theta, requires_grad=True)
    pi_t = torch.softmax(torch.einsum("rmd,rd->rm", theta_t, torch.tensor(xbar)), dim=-1)
    loss = alpha * torch.sum(pi_t * torch.log(pi_t), dim=-1)
    (grad,) = torch.autograd.grad(loss.sum(), theta_t)
    pi = gate.softmax(gate.gate_values(theta, xbar))
    np.testing.assert_allclose(gate.entropy_loss(pi, alpha), loss.detach().numpy(), atol=1e-12)
    c = gate.BALANCE_LOSSES["entropy"](pi, None, alpha, 1)
    np.testing.assert_allclose(c[..., None] * xbar[:, None, :], grad.numpy(), atol=1e-10, rtol=0)
    # The bonus pushes towards uniform routing: a step lowers -H(pi).
    stepped = gate.gate_step(theta, c, xbar, 0.05)
    assert np.all(gate.entropy_loss(gate.softmax(gate.gate_values(stepped, xbar)), alpha) < gate.entropy_loss(pi, alpha))


def test_gap_termination_with_per_replicate_first_check():
    """After a re-opening a replicate clears no flag until its own round T1 + t_reopen."""
    rule = gate.TERMINATION_RULES["gap"]
    h = np.zeros((2, 3))  # every gap is 0 < Gamma: a checked replicate clears every flag
    flags, stop = rule.update(rule.initial_flags((2, 3)), h, np.array([0, 0]), 10, np.array([5, 10]), 0.1)
    np.testing.assert_array_equal(stop, [True, False])
    np.testing.assert_array_equal(flags, [[False] * 3, [True] * 3])


def test_locality_reopening_counts_consecutive_large_changes():
    rule = gate.REOPEN_RULES["locality"]
    strikes = np.zeros(3, dtype=int)
    terminated = np.array([True, True, False])
    history = []
    for change in ([0.5, 0.5, 0.5], [0.5, 0.01, 0.5], [0.5, 0.5, 0.5]):
        strikes, reopen = rule.update(strikes, terminated, np.array(change), 0.1, 3)
        history.append(reopen.copy())
    np.testing.assert_array_equal(history[-1], [True, False, False])  # 3 in a row; the 2nd was reset
    np.testing.assert_array_equal(strikes, [0, 1, 0])  # reset after re-opening; a training gate counts nothing
    assert not np.any(gate.REOPEN_RULES["never"].update(strikes, terminated, np.ones(3), 0.1, 1)[1])


def test_least_change_ties_do_not_depend_on_rounding():
    # two equal experts whose norms differ only by rounding (another CPU's kernels) tie: the lowest index
    rng = np.random.default_rng(0)
    d, s = 6, 3
    Z = rng.standard_normal((1, s, d))
    L = np.linalg.cholesky(Z @ np.swapaxes(Z, -1, -2))
    target = rng.standard_normal((1, d))
    models = np.stack([np.zeros(d), target[0] * 1e-13, target[0] * 0.5])[None]  # expert 1 is 1e-13 closer
    router = gate.ROUTERS["least_change"]
    assert router.choose(None, None, Z, L, target, models)[0] == 2  # a real difference still decides
    assert router.choose(None, None, Z, L, target, models[:, :2])[0] == 0  # a rounding-sized one does not
