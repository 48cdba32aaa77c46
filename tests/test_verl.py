"""The verl plug-in on CPU: registration through the entry point (in a fresh process), the config from
Hydra-style overrides, the registered loss against the core, and the driver-side controller with the
worker group and TransferQueue mocked. No Ray cluster, no rollout engine: docs/verl.md says what was run."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace
from unittest import mock

import pytest
import torch

pytest.importorskip("verl", reason="the optional verl extra (pip install -e '.[verl]')")
import verl
from hydra import compose, initialize_config_dir
from ray import cloudpickle
from tensordict import TensorDict
from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY, get_policy_loss_fn
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass

from entropic_rl.core import AGG_MODES, policy_loss
from entropic_rl.integrations import verl as plugin
from entropic_rl.integrations.state_file import STATE_FILE
from test_losses import rollout

OURS = "entropic_rl.integrations.verl.EntroPICPolicyLossConfig"
BASE = [
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
    f"actor_rollout_ref.actor.policy_loss._target_={OURS}",
    "actor_rollout_ref.actor.policy_loss.loss_mode=entropic",
    "trainer.v1.trainer_mode=entropic",
]


def verl_config(*overrides):
    with initialize_config_dir(
        config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer/config"), version_base=None
    ):
        return compose(config_name="ppo_trainer", overrides=[*BASE, *overrides])


@pytest.fixture(scope="module")
def actor_config():
    return omega_conf_to_dataclass(verl_config().actor_rollout_ref.actor)


def test_verl_loads_the_plugin_through_its_entry_point():
    assert POLICY_LOSS_REGISTRY["entropic"] is plugin.compute_policy_loss_entropic
    assert TRAINER_REGISTRY["entropic"] is plugin.EntroPICTrainer


def test_import_verl_alone_registers_the_plugin_and_loads_nothing_of_the_trainer():
    # In a fresh process, as on a Ray worker: only verl's own entry-point discovery imports the plug-in
    # (a failure there is hidden at debug level), and the plug-in imports the core and the method only.
    check = (
        "import sys, verl\n"
        "from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY\n"
        "from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY\n"
        "print('entropic' in POLICY_LOSS_REGISTRY, 'entropic' in TRAINER_REGISTRY)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('entropic_rl'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    registered, modules = done.stdout.strip().splitlines()[-2:]
    assert registered == "True True"
    loaded = set(modules.split())
    assert "entropic_rl.integrations.verl" in loaded
    for layer in ("trainer", "models", "evaluation", "tasks", "simulator"):
        assert not any(m.startswith(f"entropic_rl.{layer}") for m in loaded), sorted(loaded)


def test_the_config_instantiates_from_hydra_overrides():
    config = verl_config(
        "+actor_rollout_ref.actor.policy_loss.target_entropy=0.2",
        "+actor_rollout_ref.actor.policy_loss.kp=5",
        "+actor_rollout_ref.actor.policy_loss.threshold=0.9",
    )
    settings = omega_conf_to_dataclass(config.actor_rollout_ref.actor).policy_loss
    assert isinstance(settings, plugin.EntroPICPolicyLossConfig)
    assert (settings.target_entropy, settings.kp, settings.threshold, settings.delivery) == (0.2, 5, 0.9, "loss")

    schedule = "{kind: linear, start: 0.5, end: 0.1, steps: 10}"
    config = verl_config(
        "+actor_rollout_ref.actor.policy_loss.target_entropy=null",
        f"+actor_rollout_ref.actor.policy_loss.schedule={schedule}",
    )
    settings = omega_conf_to_dataclass(config.actor_rollout_ref.actor).policy_loss
    assert settings.method_config().schedule == {"kind": "linear", "start": 0.5, "end": 0.1, "steps": 10}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+actor_rollout_ref.actor.policy_loss.kp=-1", r"policy_loss\.kp must be"),
        ("+actor_rollout_ref.actor.policy_loss.delivery=carrier-pigeon", r"policy_loss\.delivery must be one of"),
        (
            "+actor_rollout_ref.actor.policy_loss.schedule={kind: constant, end: 0.1}",  # and the default target
            r"policy_loss\.target_entropy: give exactly one",
        ),
        (
            "+actor_rollout_ref.actor.policy_loss.alpha_min=-2",
            r"policy_loss\.alpha_min must be >= -1 where the weights",
        ),
        (
            "+actor_rollout_ref.actor.policy_loss.alpha_max=1.5",
            r"policy_loss\.alpha_max must be <= 1 where the weights",
        ),
        ("+actor_rollout_ref.actor.policy_loss.normalize=reference", r"policy_loss\.normalize: only exact"),
    ],
)
def test_bad_settings_name_the_field(override, message):
    with pytest.raises(Exception, match=message):
        omega_conf_to_dataclass(verl_config(override).actor_rollout_ref.actor)


def test_the_stock_policy_loss_config_rejects_the_fields():
    # Why the plug-in has its own config class.
    config = verl_config(
        "actor_rollout_ref.actor.policy_loss._target_=verl.workers.config.PolicyLossConfig",
        "+actor_rollout_ref.actor.policy_loss.kp=5",
    )
    with pytest.raises(Exception, match="kp"):
        omega_conf_to_dataclass(config.actor_rollout_ref.actor)


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("alpha", [-0.8, 0.0, 0.5])
def test_the_registered_loss_is_the_core_exact_loss(actor_config, agg, alpha):
    actor_config.policy_loss.step_state = json.dumps({"alpha": alpha})
    log_prob, old, adv, mask = rollout(seed=3, on_policy=False)
    loss, metrics = get_policy_loss_fn("entropic")(old, log_prob, adv, mask.bool(), agg, actor_config, None)
    core, core_metrics = policy_loss(
        log_prob,
        old,
        adv,
        mask,
        clip_low=actor_config.clip_ratio_low,
        clip_high=actor_config.clip_ratio_high,
        clip_c=actor_config.clip_ratio_c,
        agg=agg,
        alpha=alpha,
        threshold=actor_config.policy_loss.threshold,
        normalize="exact",
    )
    torch.testing.assert_close(loss, core)
    grads = [torch.autograd.grad(value, log_prob)[0] for value in (loss, core)]
    torch.testing.assert_close(grads[0], grads[1])
    assert metrics["entropic/confident_frac"] == pytest.approx(core_metrics["confident_frac"].item())


def test_the_registered_loss_refuses_to_run_without_a_delivered_alpha():
    # Without trainer.v1.trainer_mode=entropic nobody delivers alpha: the loss must not quietly run PPO.
    actor_config = omega_conf_to_dataclass(verl_config("trainer.v1.trainer_mode=sync").actor_rollout_ref.actor)
    log_prob, old, adv, mask = rollout()
    with pytest.raises(RuntimeError, match=r"set trainer\.v1\.trainer_mode=entropic"):
        get_policy_loss_fn("entropic")(old, log_prob, adv, mask.bool(), "token-mean", actor_config, None)


def test_the_registered_loss_refuses_the_stock_config(actor_config):
    stock = SimpleNamespace(policy_loss=SimpleNamespace(loss_mode="entropic"))
    log_prob, old, adv, mask = rollout()
    with pytest.raises(TypeError, match="EntroPICPolicyLossConfig"):
        get_policy_loss_fn("entropic")(old, log_prob, adv, mask.bool(), "token-mean", stock, None)


def test_the_worker_loss_takes_the_step_state_from_the_batch(actor_config):
    # Sent to the workers by Ray, which pickles it: it must survive the round trip.
    worker_loss = cloudpickle.loads(cloudpickle.dumps(plugin.EntroPICWorkerLoss(actor_config)))
    seen = []
    data = TensorDict({}, batch_size=(0,))
    with mock.patch.object(plugin, "ppo_loss", lambda config, *args: seen.append(config.policy_loss.step_state)):
        tu.assign_non_tensor(data, **{plugin.STEP_STATE_KEY: json.dumps({"alpha": -0.25})})
        worker_loss({}, data)
    assert [json.loads(state) for state in seen] == [{"alpha": -0.25}]
    with pytest.raises(RuntimeError, match=plugin.STEP_STATE_KEY):
        worker_loss({}, TensorDict({}, batch_size=(0,)))


def make_trainer(tmp_path, *overrides):
    config = verl_config(
        "+actor_rollout_ref.actor.policy_loss.target_entropy=0.2",
        "+actor_rollout_ref.actor.policy_loss.kp=2",
        "+actor_rollout_ref.actor.policy_loss.ki=0.5",
        f"trainer.default_local_dir={tmp_path / 'checkpoints'}",
        *overrides,
    )
    trainer = plugin.EntroPICTrainer(config)
    trainer.actor_rollout_wg = mock.MagicMock()
    trainer.checkpoint_manager = mock.MagicMock()
    trainer.global_steps = 0  # set by verl's _setup
    return trainer


def nested(rows):
    """Responses as verl keeps them in TransferQueue: nested (jagged) tensors."""
    return torch.nested.as_nested_tensor([torch.tensor(row) for row in rows], layout=torch.jagged)


def one_step(trainer, monkeypatch, store: TensorDict):
    """The driver's part of a step, with verl's own work replaced by what it leaves behind: the
    fields in TransferQueue (``store``) and the metrics."""
    monkeypatch.setattr(plugin.tq, "kv_batch_get", lambda select_fields, **kw: store.select(*select_fields))
    monkeypatch.setattr(plugin.tq, "kv_batch_put", lambda fields, **kw: store.update(fields))
    monkeypatch.setattr(
        PPOTrainerSync,
        "_compute_old_log_prob",
        lambda self, batch, metrics: metrics.update({"actor/entropy": "verl's aggregate, not used"}) or batch,
    )
    sent = []
    monkeypatch.setattr(PPOTrainerSync, "_update_actor", lambda self, batch, metrics: sent.append(batch.extra_info))
    metrics = {}
    batch = SimpleNamespace(extra_info={}, keys=["a", "b"], partition_id="train")
    trainer._compute_old_log_prob(batch, metrics)
    trainer._update_actor(batch, metrics)
    return metrics, sent[0]


def entropy_store(entropy, advantages=(1.0, -1.0)):
    """Two responses of lengths 3 and 2 whose every token has this entropy, and these advantages."""
    return TensorDict(
        {
            "entropy": nested([[entropy] * 3, [entropy] * 2]),
            "response_mask": nested([[1, 1, 1], [1, 1]]),
            "advantages": nested([[advantages[0]] * 3, [advantages[1]] * 2]),
        },
        batch_size=2,
    )


def test_the_driver_controller_sends_one_alpha_per_step(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path)
    assert trainer.trainer_mode == "sync"  # verl's sync code paths

    trainer.on_init_end()
    (worker_loss,), _ = trainer.actor_rollout_wg.set_loss_fn.call_args
    assert isinstance(worker_loss, plugin.EntroPICWorkerLoss)

    metrics, extra = one_step(trainer, monkeypatch, entropy_store(0.5))  # too much entropy: alpha > 0
    assert metrics["entropic/alpha"] == pytest.approx(2 * 0.3) == json.loads(extra[plugin.STEP_STATE_KEY])["alpha"]
    assert metrics["entropic/entropy"] == pytest.approx(0.5) and metrics["entropic/target"] == 0.2
    metrics, extra = one_step(trainer, monkeypatch, entropy_store(0.1))  # too little: P pulls alpha below 0
    assert json.loads(extra[plugin.STEP_STATE_KEY])["alpha"] == pytest.approx(2 * -0.1 + 0.5 * 0.3)
    assert trainer.method.controller.steps == 2


def test_a_rollout_serving_several_optimizer_steps_integrates_each(tmp_path, monkeypatch):
    # 2 sequences, mini-batches of 1, 2 epochs: 4 optimizer steps on one measured entropy.
    trainer = make_trainer(
        tmp_path, "actor_rollout_ref.actor.ppo_mini_batch_size=1", "actor_rollout_ref.actor.ppo_epochs=2"
    )
    one_step(trainer, monkeypatch, entropy_store(0.5))
    assert trainer.method.controller.steps == 4
    assert trainer.method.metrics()["entropic/integral"] == pytest.approx(4 * 0.3)


def test_the_optimizer_steps_of_a_rollout_count_its_samples_per_prompt(tmp_path, monkeypatch):
    # ppo_mini_batch_size counts prompts: with rollout.n 2 a mini-batch of 1 prompt is 2 sequences, so the
    # batch of 2 sequences is one optimizer step (as many as verl takes), not two.
    trainer = make_trainer(tmp_path, "actor_rollout_ref.actor.ppo_mini_batch_size=1", "actor_rollout_ref.rollout.n=2")
    one_step(trainer, monkeypatch, entropy_store(0.5))
    assert trainer.method.controller.steps == 1
    assert trainer.method.metrics()["entropic/integral"] == pytest.approx(0.3)


def test_bypass_mode_without_the_old_policys_entropy_is_refused(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path)
    monkeypatch.setattr(PPOTrainerSync, "_compute_old_log_prob", lambda self, batch, metrics: batch)  # no entropy
    with pytest.raises(ValueError, match=r"algorithm\.rollout_correction\.bypass_mode=false"):
        trainer._compute_old_log_prob(SimpleNamespace(keys=[], partition_id="train"), {})


def test_gains_auto_adapts_only_while_some_sequences_carry_an_advantage(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, "+actor_rollout_ref.actor.policy_loss.gains=auto")
    for _ in range(25):  # a persistent small error, alpha unsaturated: kappa rises from window 21 on
        one_step(trainer, monkeypatch, entropy_store(0.19, advantages=(1.0, 0.0)))  # one of two mixed
    kappa = trainer.method.metrics()["entropic/kappa"]
    assert kappa > 3.0
    for _ in range(5):  # every group uniform: no advantage anywhere, kappa frozen
        metrics, _ = one_step(trainer, monkeypatch, entropy_store(0.19, advantages=(0.0, 0.0)))
    assert metrics["entropic/kappa"] == kappa and metrics["entropic/adapt"] == 0.0


def saved_at_step(tmp_path, monkeypatch, step: int) -> tuple[plugin.EntroPICTrainer, dict]:
    """A trainer after one step, its checkpoint saved as global step ``step``, and the state it saved."""
    trainer = make_trainer(tmp_path)
    one_step(trainer, monkeypatch, entropy_store(0.5))
    trainer.global_steps = step
    monkeypatch.setattr(PPOTrainerSync, "_save_checkpoint", lambda self: None)
    trainer._save_checkpoint()
    return trainer, json.loads(json.dumps(trainer.method.state_dict()))


def restored_at_step(tmp_path, monkeypatch, step: int, *overrides) -> plugin.EntroPICTrainer:
    """A new trainer whose verl checkpoint load sets global step ``step``, after its ``_load_checkpoint``."""
    resumed = make_trainer(tmp_path, *overrides)
    monkeypatch.setattr(PPOTrainerSync, "_load_checkpoint", lambda self: setattr(self, "global_steps", step))
    resumed._load_checkpoint()
    return resumed


def test_the_controller_state_is_saved_with_verl_checkpoints_and_restored(tmp_path, monkeypatch):
    trainer, at_save = saved_at_step(tmp_path, monkeypatch, 7)
    one_step(trainer, monkeypatch, entropy_store(0.2))  # the live controller moves on after the save

    resumed = restored_at_step(tmp_path, monkeypatch, 7)
    assert resumed.method.state_dict() == at_save != trainer.method.state_dict()

    (tmp_path / "checkpoints" / "global_step_7" / STATE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=STATE_FILE):
        make_trainer(tmp_path)._load_checkpoint()


def test_resume_path_restores_the_controller_from_that_folder(tmp_path, monkeypatch):
    _, at_save = saved_at_step(tmp_path, monkeypatch, 3)
    elsewhere = tmp_path / "elsewhere" / "global_step_3"
    elsewhere.parent.mkdir()
    (tmp_path / "checkpoints" / "global_step_3").rename(elsewhere)

    # nothing is left in default_local_dir: only resume_from_path has it
    overrides = ("trainer.resume_mode=resume_path", f"trainer.resume_from_path={elsewhere}")
    assert restored_at_step(tmp_path, monkeypatch, 3, *overrides).method.state_dict() == at_save


def test_the_advantage_fallback_reweights_with_the_old_policy(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, "+actor_rollout_ref.actor.policy_loss.delivery=advantages")
    trainer.on_init_end()
    trainer.actor_rollout_wg.set_loss_fn.assert_not_called()  # the workers keep verl's loss, the vanilla one
    assert trainer.config.actor_rollout_ref.actor.policy_loss.loss_mode == "vanilla"

    old_probs = [[0.99, 0.5, 0.99], [0.99, 0.2]]
    store = entropy_store(0.5)  # alpha = 0.6
    store["advantages"] = nested([[1.0, 1.0, 1.0], [-2.0, -2.0]])
    store["old_log_probs"] = nested([[torch.tensor(p).log().item() for p in row] for row in old_probs])
    _, extra = one_step(trainer, monkeypatch, store)
    assert plugin.STEP_STATE_KEY not in extra
    torch.testing.assert_close(store["advantages"][0], torch.tensor([1.6, 1.0, 1.6]))  # confident positives: 1 + alpha
    torch.testing.assert_close(store["advantages"][1], torch.tensor([-0.8, -2.0]))  # confident negative: 1 - alpha


def test_distillation_needs_the_advantage_delivery(tmp_path):
    with pytest.raises(ValueError, match="delivery=advantages"):
        make_trainer(tmp_path, "distillation.enabled=true")


def test_the_entropic_trainer_needs_the_entropic_config(tmp_path):
    config = verl_config("actor_rollout_ref.actor.policy_loss._target_=verl.workers.config.PolicyLossConfig")
    with pytest.raises(ValueError, match="EntroPICPolicyLossConfig"):
        plugin.EntroPICTrainer(config)


@pytest.mark.parametrize("dynamic", [True, False])
def test_alpha_in_the_batch_meta_data_reaches_every_micro_batch(dynamic):
    # The path from the driver's extra_info to the worker loss: verl turns extra_info into
    # non-tensor data of the worker's batch, which its mini-batch iterator and micro-batch
    # split (fixed or dynamic size) must carry along.
    from verl.workers.engine.utils import prepare_micro_batches

    lengths = [3, 2, 4, 1, 2, 3, 1, 4]
    ids = torch.nested.as_nested_tensor([torch.ones(n, dtype=torch.long) for n in lengths], layout=torch.jagged)
    batch = TensorDict({"input_ids": ids, "attention_mask": ids.clone()}, batch_size=len(lengths))
    tu.assign_non_tensor(batch, use_dynamic_bsz=dynamic, max_token_len_per_gpu=5, micro_batch_size_per_gpu=2)
    tu.assign_non_tensor(batch, **{plugin.STEP_STATE_KEY: json.dumps({"alpha": 0.37})})
    seen = []
    for mini in tu.make_iterator(batch, mini_batch_size=4, epochs=2, seed=1, dataloader_kwargs={"shuffle": True}):
        micro_batches, _ = prepare_micro_batches(mini)
        seen += [tu.get_non_tensor_data(micro, plugin.STEP_STATE_KEY, None) for micro in micro_batches]
    assert len(seen) >= 8 and set(seen) == {json.dumps({"alpha": 0.37})}


def test_the_worker_loss_runs_verls_ppo_loss_with_the_global_batch_normaliser(actor_config):
    # verl's real ppo_loss on one micro-batch of a global batch twice its size: its responses laid out as
    # verl's workers have them (no padding, one log-prob a sequence position, shifted by one), and the
    # global token count for token-mean. The loss is the core exact loss with that denominator.
    log_prob, old, adv, mask = rollout(seed=3, on_policy=False)
    lengths = [int(n) for n in mask.sum(1)]
    flat = torch.cat(
        [torch.cat([torch.zeros(1), log_prob[i, :n].detach(), torch.zeros(1)]) for i, n in enumerate(lengths)]
    )
    flat.requires_grad_()
    data = TensorDict(
        {
            "prompts": nested([[1, 2]] * len(lengths)),
            "responses": nested([[5] * n for n in lengths]),
            "response_mask": nested([[1] * n for n in lengths]),
            "old_log_probs": nested([old[i, :n].tolist() for i, n in enumerate(lengths)]),
            "advantages": nested([adv[i, :n].tolist() for i, n in enumerate(lengths)]),
        },
        batch_size=len(lengths),
    )
    tokens = sum(lengths)
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=2 * tokens, global_batch_size=2 * len(lengths))
    tu.assign_non_tensor(data, **{plugin.STEP_STATE_KEY: json.dumps({"alpha": -0.8})})
    loss, _ = plugin.EntroPICWorkerLoss(actor_config)({"log_probs": flat}, data)

    width = max(lengths)
    sequences = torch.split(flat, [2 + n for n in lengths])  # its 2 prompt positions, then its n responses'
    ours = torch.stack(
        [torch.nn.functional.pad(seq[1 : 1 + n], (0, width - n)) for seq, n in zip(sequences, lengths, strict=True)]
    )
    core, _ = policy_loss(
        ours,
        old[:, :width] * mask[:, :width],
        adv[:, :width] * mask[:, :width],
        mask[:, :width],
        clip_low=actor_config.clip_ratio_low,
        clip_high=actor_config.clip_ratio_high,
        clip_c=actor_config.clip_ratio_c,
        alpha=-0.8,
        threshold=actor_config.policy_loss.threshold,
        denominator=2.0 * tokens,  # the global batch's tokens: half this micro-batch's mean
    )
    torch.testing.assert_close(loss, core)
    grads = [torch.autograd.grad(value, flat, retain_graph=True)[0] for value in (loss, core)]
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0
