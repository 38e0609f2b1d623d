"""DMD, DMD2 and Diffusion2GAN on a problem with a known answer: a conditional 2-D Gaussian
mixture (8 modes on a circle; condition 0 uses the even modes, 1 the odd ones) whose teacher is
the EXACT x0-predictor under our cosine schedule (no teacher training). Each trainer starts
from a student that outputs the mixture mean (the teacher at t=1) and must move its samples'
distribution towards the target (sliced Wasserstein distance)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidfx.diffusion.d2g import D2GConfig, D2GTrainer, e_latent_distance
from vidfx.diffusion.dmd import DMD2Config, DMD2Trainer, DMDConfig, DMDTrainer
from vidfx.diffusion.schedule import add_noise, alpha_sigma, ancestral_sample, ddim_sample, renoise_sample
from vidfx.diffusion.task import PairSet, Student

MODES, CLASSES, RADIUS, STD = 8, 2, 2.0, 0.15


class MixtureDenoiser(nn.Module):
    """Exact x0-predictor of a class-conditional isotropic Gaussian mixture (learnable means,
    variances and class priors) plus a residual MLP whose last layer starts at zero, so a fresh
    instance is exact. ``features=True`` also returns (hidden MLP activations, responsibilities)."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        angles = torch.arange(MODES) * (2 * math.pi / MODES)
        self.means = nn.Parameter(RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1))
        self.log_var = nn.Parameter(torch.full((MODES,), 2 * math.log(STD)))
        prior = torch.full((CLASSES, MODES), -30.0)
        for k in range(MODES):
            prior[k % CLASSES, k] = 0.0
        self.prior = nn.Parameter(prior)
        self.mlp = nn.Sequential(nn.Linear(2 + 16 + CLASSES, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.out = nn.Linear(hidden, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_t, t, cond, features=False):
        a, s = (v[:, None] for v in alpha_sigma(t))  # (B, 1)
        var = self.log_var.exp()[None]  # (1, K)
        total = a**2 * var + s**2  # (B, K) variance of x_t given the component
        centred = x_t[:, None, :] - a[:, :, None] * self.means[None]  # (B, K, 2)
        loglik = -(centred**2).sum(-1) / (2 * total) - total.log()
        logprior = F.log_softmax(cond @ self.prior, dim=-1)
        resp = torch.softmax(loglik + logprior, dim=-1)  # (B, K)
        post = self.means[None] + (a * var / total)[..., None] * centred  # (B, K, 2)
        x0 = (resp[..., None] * post).sum(1)
        freqs = torch.arange(1, 9, dtype=t.dtype) * math.pi
        temb = torch.cat([(t[:, None] * freqs).sin(), (t[:, None] * freqs).cos()], dim=1)
        h = self.mlp(torch.cat([x_t, temb, cond], dim=1))
        x0 = x0 + self.out(h)
        return (x0, torch.cat([h, resp], dim=1)) if features else x0


class MixtureTask:
    """The :class:`~vidfx.diffusion.task.DistillTask` of the toy problem."""

    shape = (2,)

    def __init__(self, collapse: float = 1.0):
        self.collapse = collapse  # generator's mixture means scaled by this (1: the teacher itself)
        self.denoiser = MixtureDenoiser().requires_grad_(False)
        self.projection = torch.randn(2, 32) * 1.5
        self.phase = torch.rand(32) * 2 * math.pi

    def teacher(self, x_t, t, cond):
        with torch.no_grad():
            return self.denoiser(x_t, t, cond)

    def make_fake_score(self):
        return copy.deepcopy(self.denoiser).requires_grad_(True)

    def make_generator(self):
        net = copy.deepcopy(self.denoiser).requires_grad_(True)
        with torch.no_grad():
            net.means.mul_(self.collapse)
        return net

    def sample_cond(self, batch):
        return F.one_hot(torch.randint(0, CLASSES, (batch,)), CLASSES).float()

    def sample_real(self, batch, cond):
        label = cond.argmax(1)
        mode = label + CLASSES * torch.randint(0, MODES // CLASSES, (batch,))
        return self.denoiser.means.detach()[mode] + STD * torch.randn(batch, 2)

    def features(self, x0, cond):
        # a fixed random-Fourier-feature network (the toy's stand-in for a latent feature net)
        return torch.cat([x0, torch.sin(x0 @ self.projection + self.phase)], dim=1)

    def random_augment(self, batch):
        angle = torch.rand(batch) * 2 * math.pi
        scale = 0.8 + 0.4 * torch.rand(batch)
        rot = torch.stack(
            [torch.stack([angle.cos(), -angle.sin()], -1), torch.stack([angle.sin(), angle.cos()], -1)], 1
        )
        return lambda x: scale[:, None] * torch.einsum("bij,bj->bi", rot, x)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, projections: int = 128) -> float:
    """Sliced W1 distance between two equal-size 2-D point sets (fixed directions)."""
    angles = torch.arange(projections) * (math.pi / projections)
    dirs = torch.stack([angles.cos(), angles.sin()], dim=0)
    px, _ = (x @ dirs).sort(dim=0)
    py, _ = (y @ dirs).sort(dim=0)
    return (px - py).abs().mean().item()


def distance_to_target(task: MixtureTask, student: Student, per_class: int = 1000) -> float:
    """Mean over the two classes of the sliced W1 between student and target samples."""
    gen = torch.Generator().manual_seed(123)
    total = 0.0
    for label in range(CLASSES):
        cond = F.one_hot(torch.full((per_class,), label), CLASSES).float()
        noise = torch.randn(per_class, 2, generator=gen)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(7)
            x = student(noise, cond)
            real = task.sample_real(per_class, cond)
        total += sliced_wasserstein(x, real)
    return total / CLASSES


@pytest.fixture(autouse=True)
def _seed():
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # the measured numbers are for one thread
    yield
    torch.set_num_threads(threads)


def denoising_error(net, x0: torch.Tensor, cond: torch.Tensor) -> float:
    """x0-prediction MSE of ``net`` on samples ``x0`` noised at fixed times (fixed noise)."""
    gen = torch.Generator().manual_seed(5)
    t = 0.05 + 0.3 * torch.rand(x0.shape[0], generator=gen)
    x_t = add_noise(x0, t, torch.randn(x0.shape, generator=gen))
    with torch.no_grad():
        return F.mse_loss(net(x_t, t, cond), x0).item()


def test_exact_teacher_samplers_reach_the_target():
    task = MixtureTask()
    cond = task.sample_cond(2000)
    noise = torch.randn(2000, 2)
    real = task.sample_real(2000, cond)
    floor = sliced_wasserstein(task.sample_real(2000, cond), real)
    ddim = ddim_sample(lambda x, t: task.teacher(x, t, cond), noise, 16)
    anc = ancestral_sample(lambda x, t: task.teacher(x, t, cond), noise, 16, torch.Generator().manual_seed(1))
    mean_only = task.teacher(noise, torch.ones(2000), cond)  # the teacher at t=1: the mixture mean
    assert sliced_wasserstein(ddim, real) < floor + 0.1
    assert sliced_wasserstein(anc, real) < floor + 0.1
    assert sliced_wasserstein(mean_only, real) > 1.0
    assert not torch.allclose(ddim, anc)


def test_pair_set_is_cached_and_resumes_after_an_interruption(tmp_path):
    task = MixtureTask()
    calls = {"n": 0}
    teacher = task.teacher

    def failing_teacher(x_t, t, cond):
        calls["n"] += 1
        if calls["n"] > 8:  # 4 steps per chunk: dies in the third chunk
            raise RuntimeError("interrupted")
        return teacher(x_t, t, cond)

    task.teacher = failing_teacher  # type: ignore[method-assign]
    path = tmp_path / "pairs.pt"
    with pytest.raises(RuntimeError):
        PairSet.build(task, 500, 4, path, chunk=100, seed=3)
    assert PairSet.load(path).done == 200

    task.teacher = teacher  # type: ignore[method-assign]
    resumed = PairSet.build(task, 500, 4, path, chunk=100, seed=3)
    whole = PairSet.build(MixtureTask(), 500, 4, None, chunk=500, seed=3)
    assert resumed.done == 500 and PairSet.load(path).done == 500
    assert torch.equal(resumed.noise, whole.noise) and torch.equal(resumed.cond, whole.cond)
    assert torch.allclose(resumed.x0, whole.x0, atol=1e-5)
    expected = ddim_sample(lambda x, t: teacher(x, t, whole.cond[:10]), whole.noise[:10], 4)
    assert torch.allclose(resumed.x0[:10], expected, atol=1e-5)
    with pytest.raises(ValueError, match="pairs.pt"):
        PairSet.build(task, 500, 8, path)


def test_dmd_moves_the_student_to_the_target_and_the_fake_score_tracks_it(tmp_path):
    task = MixtureTask()
    pairs = PairSet.build(task, 1024, 8)
    trainer = DMDTrainer(task, pairs, DMDConfig(batch=128, lr_generator=1e-3, lr_fake=1e-3))
    before = distance_to_target(task, trainer.student)
    for _ in range(300):
        losses = trainer.step()
    after = distance_to_target(task, trainer.student)
    print(f"DMD sliced W1 {before:.3f} -> {after:.3f}")
    assert set(losses) == {"dm", "regression", "fake"}
    assert after < 0.5 * before

    cond = task.sample_cond(2000)
    with torch.no_grad():
        x = trainer.student(torch.randn(2000, 2), cond)
    fake_err, teacher_err = denoising_error(trainer.fake, x, cond), denoising_error(task.teacher, x, cond)
    print(f"x0 error on student samples: fake {fake_err:.4f}, teacher {teacher_err:.4f}")
    assert fake_err < 0.9 * teacher_err

    torch.save(trainer.state_dict(), tmp_path / "dmd.pt")
    again = DMDTrainer(task, pairs, DMDConfig(batch=128))
    again.load_state_dict(torch.load(tmp_path / "dmd.pt", weights_only=True))
    assert again.steps_done == 300
    assert distance_to_target(task, again.student) == pytest.approx(after)


def test_dmd2_one_step_moves_the_student_to_the_target():
    task = MixtureTask()
    config = DMD2Config(batch=128, lr_generator=2e-3, lr_fake=1e-3, fake_updates=5)
    trainer = DMD2Trainer(task, config)
    before = distance_to_target(task, trainer.student)
    for _ in range(300):
        losses = trainer.step()
    after = distance_to_target(task, trainer.student)
    print(f"DMD2 sliced W1 {before:.3f} -> {after:.3f}")
    assert set(losses) == {"dm", "gan_g", "gan_d", "fake"}
    assert after < 0.6 * before
    assert trainer.last_backward["index"] == 0 and trainer.last_backward["x0_prev"] is None


def test_dmd2_multi_step_trains_on_its_own_intermediate_samples():
    task = MixtureTask()
    trainer = DMD2Trainer(task, DMD2Config(batch=32, student_steps=4, fake_updates=1))
    assert trainer.student.times == [1.0, 0.75, 0.5, 0.25]
    calls: list[tuple[torch.Tensor, float, torch.Tensor, bool]] = []
    hook = trainer.student.net.register_forward_hook(
        lambda mod, args, out: calls.append((args[0].detach(), float(args[1][0]), out.detach(), out.requires_grad))
    )
    seen = set()
    for _ in range(12):
        calls.clear()
        trainer.step()
        info = trainer.last_backward
        index = info["index"]
        seen.add(index)
        graded = [c for c in calls if c[3]]
        assert len(graded) == 1  # exactly one student call carries the generator's gradient
        x_in, t_in, _, _ = graded[0]
        assert t_in == trainer.student.times[index]
        assert torch.equal(x_in, info["x_t"])
        if index == 0:
            assert torch.equal(x_in, info["noise"])
            continue
        # the input is the student's own previous x0 (made in this step, no gradient), re-noised
        prev = [c for c in calls if not c[3] and c[1] == trainer.student.times[index - 1]]
        assert any(torch.equal(c[2], info["x0_prev"]) for c in prev)
        t_prev = torch.full((32,), trainer.student.times[index])
        assert torch.allclose(x_in, add_noise(info["x0_prev"], t_prev, info["renoise"][index - 1]))
    hook.remove()
    assert len(seen) >= 3


def test_diffusion2gan_moves_the_student_to_the_target():
    task = MixtureTask()
    pairs = PairSet.build(task, 1024, 8)
    trainer = D2GTrainer(task, pairs, D2GConfig(batch=128, lr_generator=1e-3, lr_discriminator=1e-3))
    before = distance_to_target(task, trainer.student)
    for _ in range(300):
        losses = trainer.step()
    after = distance_to_target(task, trainer.student)
    print(f"Diffusion2GAN sliced W1 {before:.3f} -> {after:.3f}")
    assert set(losses) == {"regression", "gan_g", "gan_d"}
    assert after < 0.5 * before
    assert len(trainer.discriminator.heads) == 3


def test_e_latent_distance_is_augmentation_averaged_and_zero_on_equal_inputs():
    task = MixtureTask()
    x = torch.randn(64, 2, requires_grad=True)
    y = torch.randn(64, 2)
    assert e_latent_distance(task, y.clone(), y, None, ensemble=3).item() == 0.0
    d = e_latent_distance(task, x, y, None, ensemble=3)
    d.backward()
    assert d.item() > 0 and x.grad is not None and x.grad.abs().sum() > 0
    # random rotations/scalings change the value from draw to draw
    assert e_latent_distance(task, x, y, None, 1).item() != e_latent_distance(task, x, y, None, 1).item()


def test_renoise_sampler_is_the_students_own_chain():
    # what the node runs (renoise_sample with fixed fields) is what DMD2 trained: Student's chain
    task = MixtureTask()
    student = Student.uniform(task.make_generator(), 4)
    cond = task.sample_cond(64)
    noise = torch.randn(64, 2)
    fresh = [torch.randn(64, 2) for _ in range(3)]
    with torch.no_grad():
        chain = student.call(*student.simulate(noise, cond, 3, fresh)[:1], 3, cond)
    sampled = renoise_sample(lambda x, t: student.net(x, t, cond), noise, 4, fresh)
    assert torch.allclose(chain, sampled, atol=1e-6)
    one = renoise_sample(lambda x, t: student.net(x, t, cond), noise, 1, [])
    assert torch.allclose(one, ddim_sample(lambda x, t: student.net(x, t, cond), noise, 1))
    with pytest.raises(ValueError, match="fresh noise"):
        renoise_sample(lambda x, t: student.net(x, t, cond), noise, 3, fresh[:1])
