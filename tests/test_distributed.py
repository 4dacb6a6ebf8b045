"""Data-parallel training with torchrun on CPU (gloo on loopback): every loss option on two ranks
equals one process over the same global batch; two "nodes" meeting at a c10d rendezvous train as
one process does; a killed worker restarts the group from its checkpoint and ends where an
uninterrupted run does; a rank that cannot read the checkpoint stops them all with a message."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from grounding.training import distributed

pytestmark = pytest.mark.slow  # torchrun groups: about a minute in all

HERE = Path(__file__).parent / "distributed"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TRAIN = ["-m", "grounding", "train", "--architecture", "tiny", "--batch-size", "16", "--warmup", "2", "--workers", "1"]
# torchrun's processes use one thread each (as torchrun sets by default); the same for the one-process run
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory):
    """Four webdataset shards of 12 captioned scenes each."""
    import io

    import webdataset as wds

    from grounding.data.synthetic import World

    root = tmp_path_factory.mktemp("shards")
    for shard in range(4):
        with wds.TarWriter(str(root / f"shard-{shard:05d}.tar")) as sink:
            for i, scene in enumerate(World().batch(20 + shard, 0, 12)):
                data = io.BytesIO()
                scene.render(48).save(data, format="PNG")
                sink.write({"__key__": f"{shard}-{i:03d}", "png": data.getvalue(), "txt": scene.caption()})
    return root


@contextlib.contextmanager
def _started(command: list[str]):
    """A torchrun in a session of its own, killed with its workers if the test fails before it ends."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ONE_THREAD,
                               start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str, **kwargs) -> subprocess.CompletedProcess:
    standalone = ["--standalone"] if "--nnodes" not in args else []
    return subprocess.run(TORCHRUN + standalone + list(args), capture_output=True, text=True, env=ONE_THREAD,
                          timeout=120, **kwargs)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_every_loss_option_on_two_ranks_equals_one_process_over_the_global_batch(tmp_path):
    spec = importlib.util.spec_from_file_location("equivalence", HERE / "equivalence.py")
    equivalence = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(equivalence)
    ran = _torchrun("--nproc-per-node", "2", str(HERE / "equivalence.py"), str(tmp_path / "two.pt"))
    assert ran.returncode == 0, ran.stderr[-3000:]
    two = torch.load(tmp_path / "two.pt")
    for case in equivalence.CASES:
        loss, grads = equivalence.one_step(case, distributed.World())
        loss_2, grads_2 = two[case]
        assert abs(loss - loss_2) < 1e-5, case
        assert grads.keys() == grads_2.keys() and len(grads) > 10, case
        for name, grad in grads.items():
            assert torch.allclose(grad, grads_2[name], rtol=0, atol=1e-5), (case, name)
            assert grad.abs().max() > 0, (case, name)  # every parameter learns something from the step


@pytest.mark.parametrize("loss, with_grad, local, words", [
    ("clip", False, True, "--local-loss needs --gather-with-grad"),
    ("siglip", True, False, "ring of ranks"),
    ("siglip", True, True, "ring of ranks"),
])
def test_combinations_that_would_train_on_a_wrong_gradient_are_refused(loss, with_grad, local, words):
    with pytest.raises(ValueError, match=words):
        distributed.check_options(loss, with_grad, local)


def test_options_that_only_one_process_can_use_are_refused_under_torchrun(tmp_path):
    ran = _torchrun("--nproc-per-node", "2", *TRAIN, "--steps", "2", "--accum", "2", "--out", str(tmp_path / "run"))
    assert ran.returncode != 0
    assert "--accum splits a batch on one process" in ran.stderr
    assert not (tmp_path / "run").exists()


def test_two_nodes_at_a_c10d_rendezvous_train_as_one_process_does(tmp_path):
    steps = ["--steps", "6", "--save-every", "3"]
    subprocess.run([sys.executable, *TRAIN, *steps, "--out", str(tmp_path / "one")], check=True,
                   capture_output=True, env=ONE_THREAD)
    rendezvous = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                  "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", "grounding-test"]
    command = TORCHRUN + rendezvous + TRAIN + steps + ["--out", str(tmp_path / "two")]
    with _started(command) as first, _started(command) as second:
        nodes = [first, second]
        logs = [node.communicate(timeout=120)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs
    assert sum("done:" in log for log in logs) == 1  # rank 0 alone reports (and writes)
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), abs=1e-5)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max((one[k] - two[k]).abs().max() for k in one) < 1e-5


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/stat").read_text().split(")")[-1].split()[1] == str(pid):
                found.append(int(entry))
        except OSError:
            continue
    return found


def test_a_killed_worker_restarts_the_group_from_its_checkpoint_and_ends_where_an_uninterrupted_run_does(tmp_path):
    args = TORCHRUN + ["--standalone", "--nproc-per-node", "2", "--max-restarts", "1"] + TRAIN + \
        ["--steps", "40", "--save-every", "5", "--workers", "0"]
    whole = subprocess.run(args + ["--out", str(tmp_path / "whole")], capture_output=True, text=True, env=ONE_THREAD,
                           timeout=120)
    assert whole.returncode == 0, whole.stderr[-3000:]
    checkpoint = tmp_path / "killed" / "checkpoints" / "step-0000010"
    with _started(args + ["--out", str(tmp_path / "killed")]) as killed:
        deadline = time.monotonic() + 120
        while not checkpoint.is_dir() and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = _children(killed.pid)
        assert len(workers) == 2 and checkpoint.is_dir()
        os.kill(max(workers), signal.SIGKILL)  # the worker started last: rank 1
        log = killed.communicate(timeout=120)[0]
    assert killed.returncode == 0, log[-3000:]
    assert "exitcode: -9" in log and "from its checkpoint of step" in log  # it died, and the group resumed
    assert [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()] \
        == list(range(1, 41))
    whole_weights, killed_weights = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert all(torch.equal(whole_weights[k], killed_weights[k]) for k in whole_weights)


def test_a_rank_that_cannot_read_the_checkpoint_stops_the_group_with_a_message(tmp_path):
    run = tmp_path / "run"
    subprocess.run([sys.executable, *TRAIN, "--steps", "4", "--save-every", "2", "--out", str(run)], check=True,
                   capture_output=True, env=ONE_THREAD)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(run, elsewhere)
    shutil.rmtree(elsewhere / "checkpoints" / "step-0000004")  # what rank 1's machine sees of OUT
    ran = _torchrun("--nproc-per-node", "2", str(HERE / "restore.py"), str(run), str(elsewhere))
    assert ran.returncode != 0
    # every rank raises the same message (the first to exit has torchrun stop the others, so one may not print it)
    said = f"stopped: rank 1 (host {socket.gethostname()}): cannot read the checkpoint of step 4"
    assert said in ran.stdout and "a filesystem all the machines share" in ran.stdout


def test_tar_shards_are_split_per_rank_and_worker_and_the_checkpoint_keeps_every_stream(tmp_path, shard_folder):
    ran = _torchrun("--nproc-per-node", "2", *TRAIN, "--steps", "3", "--workers", "2", "--batch-size", "8",
                    "--tokenizer", "train", "--data", f"tar:{shard_folder}/shard-{{00000..00003}}.tar",
                    "--out", str(tmp_path / "run"))
    assert ran.returncode == 0, ran.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-0000003" / "state.pt", weights_only=True)
    assert sorted(state["data"]["positions"]) == ["0/0", "0/1", "0/2", "0/3"]  # 2 ranks x 2 workers
    assert state["data"]["ranks"] == 2
    shards = {position["shard"] for position in state["data"]["positions"].values()}
    assert len(shards) == 4  # each stream reads its own shard
