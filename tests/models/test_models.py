"""Model properties: published sizes, config validation, gradients only through the last recursion,
the ablation options, bfloat16 agreement, and the converter's handling of reference checkpoints."""

from __future__ import annotations

import pytest
import torch
from model_shapes import SMALL, random_batch, reference_state

from trm.convert import ConversionError, convert_state_dict, load_reference_checkpoint
from trm.layers import Block
from trm.loss import act_loss
from trm.models import (
    HRM,
    TRM,
    ConfigError,
    HRMConfig,
    TransformerConfig,
    TRMConfig,
    build_model,
    config_from_dict,
    count_parameters,
)


@pytest.mark.parametrize("config, expected_millions", [
    (TRMConfig(vocab_size=12, seq_len=900, hidden_size=512, num_heads=8, layers=2), 6.83),
    (TRMConfig(vocab_size=11, seq_len=81, hidden_size=512, num_heads=8, layers=2, mlp_t=True, pos_encodings="none",
               puzzle_emb_ndim=512), 5.03),
    (HRMConfig(vocab_size=12, seq_len=900, hidden_size=512, num_heads=8, puzzle_emb_ndim=512), 27.3),
])
def test_published_parameter_counts(config, expected_millions: float) -> None:
    with torch.device("meta"):
        model = build_model(config)
    assert round(count_parameters(model) / 1e6, 2 if expected_millions < 10 else 1) == expected_millions


@pytest.mark.parametrize("cls, changes, words", [
    (TRMConfig, dict(num_heads=5), "divide hidden_size"),
    (TRMConfig, dict(n=-1), "n=-1"),
    (TRMConfig, dict(T=0), "T=0"),
    (HRMConfig, dict(H_cycles=-2), "H_cycles=-2"),
    (TransformerConfig, dict(layers=0), "layers=0"),
    (TRMConfig, dict(pos_encodings="sinusoid"), "pos_encodings"),
    (TRMConfig, dict(puzzle_emb_ndim=100, puzzle_emb_len=1), "cannot hold"),
    (TRMConfig, dict(single_z=True, separate_nets=True), "separate_nets"),
    (TRMConfig, dict(halt_exploration_prob=1.5), "halt_exploration_prob"),
])
def test_config_rejects_what_cannot_work(cls, changes, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        cls(**{**SMALL, **changes})


def test_mlp_variant_is_tied_to_its_sequence_length() -> None:
    cfg = TRMConfig(**SMALL, mlp_t=True, pos_encodings="none")
    model = build_model(cfg)
    block = model.net.layers[0]
    assert isinstance(block, Block) and block.token_mlp is not None
    assert block.token_mlp.gate_up.weight.shape[1] == cfg.seq_len + cfg.prefix_len
    bad = dict(random_batch(cfg))
    bad["inputs"] = bad["inputs"][:, :-1]
    with pytest.raises(RuntimeError):
        model(model.initial_carry(bad), bad)


def test_config_round_trips_through_a_dict() -> None:
    cfg = TRMConfig(**SMALL, T=2, n=3, mlp_t=True)
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown field"):
        config_from_dict({**cfg.to_dict(), "H_cycles": 3})
    with pytest.raises(ConfigError, match="unknown arch"):
        config_from_dict({"arch": "lstm"})


@pytest.mark.parametrize("options, with_grad", [
    (dict(), 4),                        # the last recursion: n = 3 latent updates + 1 answer update
    (dict(one_step_grad=True), 2),      # only the last latent update and the answer update
    (dict(single_z=True), 4),
    (dict(separate_nets=True), 4),
])
def test_gradients_flow_only_through_the_last_recursion(options, with_grad: int) -> None:
    cfg = TRMConfig(**{**SMALL, "layers": 1}, T=3, n=3, **options)
    model = build_model(cfg).train()
    batch = random_batch(cfg)
    calls: list[bool] = []
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    hooks = [b.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled())) for b in blocks]
    carry, out = model(model.initial_carry(batch), batch)
    for h in hooks:
        h.remove()
    assert len(calls) == cfg.T * (cfg.n + 1)
    assert sum(calls) == with_grad and all(calls[-with_grad:])  # the grad-enabled calls are the last ones
    assert all(not v.requires_grad for v in carry.state.values())  # the carry is detached


def test_gradient_equals_that_of_the_last_recursion_alone() -> None:
    """Recompute the step by hand: T-1 recursions as constants, one differentiable recursion."""
    cfg = TRMConfig(**{**SMALL, "layers": 1}, T=3, n=2)
    model = build_model(cfg).train()
    batch = random_batch(cfg)
    carry = model.initial_carry(batch)
    carry, out = model(carry, batch)
    act_loss(carry, out).lm_loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    state = model.reset_state(model.initial_state(3, torch.device("cpu")), torch.ones(3, dtype=torch.bool))
    x = model.embed(batch["inputs"], batch["puzzle_identifiers"], torch.float32)
    cs = model.rotary()
    y, z = state["y"], state["z"]
    for _ in range(cfg.T - 1):
        y, z = model.recursion(x, y, z, cs)
        y, z = y.detach(), z.detach()
    y, _ = model.recursion(x, y, z, cs)
    logits = model.lm_head(y)[:, cfg.prefix_len:]
    from trm.loss import stablemax_cross_entropy
    labels = batch["labels"]
    mask = labels != -100
    (stablemax_cross_entropy(logits, labels, mask) / mask.sum(-1, keepdim=True)).sum().backward()
    for name, p in model.named_parameters():
        if name in ours:
            torch.testing.assert_close(ours[name], p.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_carry_is_detached_between_supervision_steps() -> None:
    """The gradient of step 2's loss equals that of a fresh model run from step 1's carry."""
    cfg = TRMConfig(**SMALL, T=2, n=2, layers=1)
    model = build_model(cfg).train()
    batch = random_batch(cfg)
    carry, _ = model(model.initial_carry(batch), batch)
    carry2, out2 = model(carry, batch)
    act_loss(carry2, out2).total.backward()
    g1 = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    restarted = type(carry)(state={k: v.clone() for k, v in carry.state.items()}, steps=carry.steps.clone(),
                            halted=carry.halted.clone(), data={k: v.clone() for k, v in carry.data.items()})
    carry3, out3 = model(restarted, batch)
    act_loss(carry3, out3).total.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(g1[n], p.grad, msg=n)


@pytest.mark.parametrize("config", [
    TRMConfig(**SMALL),
    TRMConfig(**SMALL, mlp_t=True, pos_encodings="none"),
    TRMConfig(**SMALL, pos_encodings="learned", single_z=True),
    TRMConfig(**SMALL, separate_nets=True, one_step_grad=True),
    TRMConfig(**SMALL, act_continue=True),
    HRMConfig(**{**SMALL, "puzzle_emb_len": 0}, H_layers=1, L_layers=1),
    TransformerConfig(**{**SMALL, "puzzle_emb_len": 0}, layers=2),
])
@pytest.mark.parametrize("loss_type", ["stablemax", "softmax"])
def test_every_variant_trains_with_both_losses(config, loss_type: str) -> None:
    model = build_model(config).train()
    batch = random_batch(config)
    carry = model.initial_carry(batch)
    for _ in range(config.halt_max_steps):
        carry, out = model(carry, batch)
        loss = act_loss(carry, out, loss_type)
        loss.total.backward()
        assert torch.isfinite(loss.total)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert (loss.q_continue_loss is not None) == config.act_continue
    assert bool(carry.halted.all())  # everything halts at N_sup


def test_softmax_and_stablemax_agree_on_what_is_right() -> None:
    from trm.loss import softmax_cross_entropy, stablemax_cross_entropy
    logits = torch.tensor([[[5.0, 0.0, -1.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, -100]])
    mask = labels != -100
    for fn in (softmax_cross_entropy, stablemax_cross_entropy):
        loss = fn(logits, labels, mask)
        assert loss[0, 1] == 0 and 0 < loss[0, 0] < 0.5
    # stablemax by hand: s = [6, 1, 0.5] -> -log(6 / 7.5)
    expected = -torch.log(torch.tensor(6 / 7.5)).item()
    assert stablemax_cross_entropy(logits, labels, mask)[0, 0].item() == pytest.approx(expected)


def test_evaluation_runs_every_slot_for_n_sup_steps() -> None:
    cfg = TRMConfig(**SMALL)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.q_head.bias.fill_(10.0)  # the halting head says "halt" everywhere
        batch = random_batch(cfg)
        carry = model.initial_carry(batch)
        for k in range(cfg.halt_max_steps):
            carry, _ = model(carry, batch)
            assert bool(carry.halted.all()) == (k == cfg.halt_max_steps - 1)
    model.train()
    carry, _ = model(model.initial_carry(batch), batch)
    assert bool(carry.halted.all())  # in training the head's "halt" is obeyed at once


def test_exploration_delays_halting_reproducibly() -> None:
    cfg = TRMConfig(**{**SMALL, "halt_exploration_prob": 1.0, "halt_max_steps": 6})
    model = build_model(cfg).train()
    with torch.no_grad():
        model.q_head.bias.fill_(10.0)
    batch = random_batch(cfg, size=64)
    carry, _ = model(model.initial_carry(batch), batch, generator=torch.Generator().manual_seed(0))
    assert not bool(carry.halted.any())  # minimum step counts are >= 2
    again, _ = model(model.initial_carry(batch), batch, generator=torch.Generator().manual_seed(0))
    assert torch.equal(carry.halted, again.halted)


def test_halted_slots_take_the_new_example_and_restart() -> None:
    cfg = TRMConfig(**SMALL)
    model = build_model(cfg).train()
    a, b = random_batch(cfg, seed=1), random_batch(cfg, seed=2)
    carry, _ = model(model.initial_carry(a), a)
    carry.halted = torch.tensor([True, False, False])
    carry, _ = model(carry, b)
    assert torch.equal(carry.data["inputs"][0], b["inputs"][0])
    assert torch.equal(carry.data["inputs"][1:], a["inputs"][1:])
    assert carry.steps.tolist() == [1, 2, 2]


@pytest.mark.parametrize("arch", ["trm", "trm_mlp", "hrm", "transformer"])
def test_bfloat16_forward_agrees_with_float32(arch: str) -> None:
    # One recursion: the token-MLP recursion amplifies rounding (float32 vs float64 too) so much that
    # after many applications no two precisions agree; precision is a property of one pass.
    cfg = {"trm": TRMConfig(**SMALL, T=1, n=2), "trm_mlp": TRMConfig(**SMALL, mlp_t=True, T=1, n=2),
           "hrm": HRMConfig(**{**SMALL, "puzzle_emb_len": 0}, H_layers=1, L_layers=1),
           "transformer": TransformerConfig(**{**SMALL, "puzzle_emb_len": 0}, layers=2)}[arch]
    torch.manual_seed(0)
    m32 = build_model(cfg, dtype=torch.float32).eval()
    m16 = build_model(cfg, dtype=torch.bfloat16).eval()
    m16.load_state_dict(m32.state_dict())
    batch = random_batch(cfg)
    with torch.no_grad():
        _, o32 = m32(m32.initial_carry(batch), batch)
        _, o16 = m16(m16.initial_carry(batch), batch)
    assert o16.logits.dtype == torch.bfloat16
    # bfloat16 keeps 8 bits of mantissa (relative step 2^-8 = 0.4%); after a few layers a few steps.
    err = (o16.logits.float() - o32.logits).abs().max() / o32.logits.abs().max()
    assert err < 0.05, err
    assert (o16.logits.float().argmax(-1) == o32.logits.argmax(-1)).float().mean() > 0.9


def test_bfloat16_training_step_runs_with_float32_parameters() -> None:
    cfg = TRMConfig(**SMALL)
    model = build_model(cfg, dtype=torch.bfloat16).train()
    batch = random_batch(cfg)
    carry, out = model(model.initial_carry(batch), batch)
    act_loss(carry, out).total.backward()
    assert all(p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
               for p in model.parameters())
    assert carry.state["y"].dtype == torch.bfloat16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda() -> None:
    """A bfloat16 training step on the GPU: finite logits on the device, a finite loss, finite gradients for
    every parameter, and the float32 CPU step's logits up to bfloat16 rounding."""
    cfg = TRMConfig(**SMALL)
    torch.manual_seed(0)
    cpu = build_model(cfg, dtype=torch.float32, device="cpu").train()
    gpu = build_model(cfg, dtype=torch.bfloat16, device="cuda").train()
    gpu.load_state_dict(cpu.state_dict())
    batch = random_batch(cfg)
    on_gpu = {k: v.cuda() for k, v in batch.items()}
    carry, out = gpu(gpu.initial_carry(on_gpu), on_gpu)
    assert out.logits.is_cuda and torch.isfinite(out.logits).all()
    loss = act_loss(carry, out).total
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in gpu.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    _, ref = cpu(cpu.initial_carry(batch), batch)
    torch.testing.assert_close(out.logits.float().cpu(), ref.logits, atol=0.15, rtol=0.1)


# --- converter -------------------------------------------------------------------------------------


def test_converter_reads_compiled_reference_checkpoints(tmp_path) -> None:
    cfg = TRMConfig(**{**SMALL, "puzzle_emb_len": 16}, T=2, n=2)
    source = build_model(cfg)
    path = tmp_path / "step_10"
    torch.save(reference_state(source), path)
    arch = {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1", "H_cycles": 2, "L_cycles": 2,
            "H_layers": 0, "L_layers": 2, "hidden_size": 32, "num_heads": 4, "expansion": 4, "pos_encodings": "rope",
            "puzzle_emb_ndim": 32, "puzzle_emb_len": 16, "halt_max_steps": 3, "halt_exploration_prob": 0.0,
            "forward_dtype": "float32", "seq_len": 9}
    import yaml
    (tmp_path / "all_config.yaml").write_text(yaml.safe_dump({"arch": arch}))
    loaded = load_reference_checkpoint(path)
    assert isinstance(loaded, TRM) and loaded.config.T == 2 and loaded.config.layers == 2
    for name, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_converter_errors_say_what_is_wrong(tmp_path) -> None:
    cfg = TRMConfig(**SMALL)
    model = build_model(cfg)
    state = reference_state(model)
    qkv = "_orig_mod.model.inner.L_level.layers.0.self_attn.qkv_proj.weight"
    with pytest.raises(ConversionError, match="shape"):
        convert_state_dict({**state, qkv: torch.zeros(3, 3)}, model)
    with pytest.raises(ConversionError, match="lacks weights"):
        convert_state_dict({k: v for k, v in state.items() if k != qkv}, model)
    with pytest.raises(ConversionError, match="no counterpart"):
        convert_state_dict({**state, "model.inner.mystery.weight": torch.zeros(1)}, model)
    with pytest.raises(ConversionError, match=r"lacks weights for \['H_net"):
        convert_state_dict(state, HRM(HRMConfig(**{**SMALL, "puzzle_emb_len": 0}, L_layers=2)))
    (tmp_path / "all_config.yaml").write_text("arch: {name: recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1}")
    (tmp_path / "step_1").write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match="step_1: not a readable PyTorch checkpoint"):
        load_reference_checkpoint(tmp_path / "step_1")
    with pytest.raises(ConversionError, match="no all_config.yaml"):
        load_reference_checkpoint(tmp_path / "elsewhere" / "step_1")
