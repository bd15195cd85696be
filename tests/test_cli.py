"""The real `tui-ft` command: JSON outputs, exit statuses, and bad input without tracebacks."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_tui_ft
from tui_ft.workspace import Workspace


def tui_ft(env, *args, timeout=600, cwd=None):
    """The real command, with room for the trainings some of these tests run."""
    return run_tui_ft(env, *args, timeout=timeout, cwd=cwd)


def assert_clean_failure(proc, status=2):
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow
def test_train_json_then_generate_json(cli_env):
    proc = tui_ft(
        cli_env,
        "train",
        "sft-lora",
        "--set",
        "training.max_steps=4",
        "--set",
        "training.eval_steps=2",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["state"] == "completed" and doc["step"] == 4 and doc["final"]
    assert isinstance(doc["loss"], float) and isinstance(doc["eval_loss"], float)
    gen = tui_ft(cli_env, "generate", doc["id"], "--prompt", "What is the capital of Korvath?", "--json")
    assert gen.returncode == 0, gen.stderr
    out = json.loads(gen.stdout)
    assert out["adapter"] is True and out["new_tokens"] > 0 and out["text"]


def test_data_check_json_fields(cli_env, demo_ws):
    proc = tui_ft(
        cli_env, "data", "check", "chat.jsonl", "--tokenizer", "demo-tiny", "--max-length", "48", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["format"] == "messages" and doc["rows"] == 400 and doc["columns"] == ["messages"]
    assert doc["errors"] == []
    stats = doc["token_stats"]
    assert stats["max_length"] == 48 and 0 < stats["over_max_length"] < 400
    assert stats["min"] <= stats["p50"] <= stats["p95"] <= stats["max"]


def test_data_check_bad_file_exits_2_with_line(cli_env, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b"}\n')
    proc = tui_ft(cli_env, "data", "check", str(bad))
    assert_clean_failure(proc)
    assert f"{bad}:2: rejected:" in proc.stderr


def write_recipe(tmp_path, body):
    path = tmp_path / "recipe.yaml"
    path.write_text(body)
    return str(path)


RECIPE = """\
method: sft
model:
  name: {model}
data:
  train: {data}
training:
  max_steps: 2
"""


@pytest.mark.parametrize(
    ("model", "data", "sets", "expect"),
    [
        ("demo-tiny", "nothere.jsonl", [], ":5: data.train: no such file: nothere.jsonl"),
        (
            "demo-tinny",
            "chat.jsonl",
            [],
            ":3: model.name: no model 'demo-tinny' here\n  hint: did you mean demo-tiny?",
        ),
        ("demo-tiny", "chat.jsonl", ["training.max_step=3"], "training.max_step: unknown key for method sft"),
        (
            "demo-tiny",
            "chat.jsonl",
            ["training.learning_rate=fast"],
            "training.learning_rate: got str 'fast'",
        ),
        (
            "demo-tiny",
            "chat.jsonl",
            ["training.learning_rate=-1e-4"],
            "--set training.learning_rate=-1e-4: training.learning_rate: -0.0001 is out of range; "
            "expected a value > 0",
        ),
    ],
)
def test_train_bad_recipe_exits_2_before_anything_runs(cli_env, demo_ws, tmp_path, model, data, sets, expect):
    before = set(demo_ws.runs.iterdir())
    path = write_recipe(tmp_path, RECIPE.format(model=model, data=data))
    args = [a for s in sets for a in ("--set", s)]
    proc = tui_ft(cli_env, "train", path, *args)
    assert_clean_failure(proc)
    assert expect in proc.stderr
    assert set(demo_ws.runs.iterdir()) == before, "a bad recipe must not create a run"


@pytest.mark.slow
def test_preference_data_given_to_sft_exits_2_naming_formats(cli_env, tmp_path):
    path = write_recipe(tmp_path, RECIPE.format(model="demo-tiny", data="preferences.jsonl"))
    proc = tui_ft(cli_env, "train", path)
    assert_clean_failure(proc)
    assert "preference" in proc.stderr and "sft" in proc.stderr


@pytest.mark.slow
def test_qlora_without_bitsandbytes_says_so_before_loading(cli_env, tmp_path):
    fake = tmp_path / "site"
    (fake / "bitsandbytes").mkdir(parents=True)
    (fake / "bitsandbytes" / "__init__.py").write_text(
        "raise ImportError('libbitsandbytes_cuda.so: cannot open')\n"
    )
    env = dict(cli_env, PYTHONPATH=str(fake))
    proc = tui_ft(env, "train", "sft-qlora", "--set", "training.max_steps=1")
    assert_clean_failure(proc)
    assert "model.quantization" in proc.stderr and "bitsandbytes" in proc.stderr
    assert "pip install" in proc.stderr


def test_usage_error_exits_2(cli_env):
    proc = tui_ft(cli_env, "train")
    assert_clean_failure(proc)
    proc = tui_ft(cli_env, "frobnicate")
    assert_clean_failure(proc)


def test_unexpected_errors_are_appended_to_the_one_error_log(tmp_path, monkeypatch, capsys):
    """A bug reaching the command line: a sentence and exit 1 on the screen; the traceback appended to
    the workspace's error log (the one the UI's failed workers write), headed by when and what ran."""
    from tui_ft import cli
    from tui_ft.errorlog import error_log

    ws = Workspace(tmp_path / "ws")
    monkeypatch.setenv("TUI_FT_HOME", str(ws.root))

    def bug(argv):
        raise RuntimeError(f"the disk caught fire during {argv[0]}")

    monkeypatch.setattr(cli, "run", bug)  # the reporting is under test, not a command
    assert cli.main(["runs"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "RuntimeError: the disk caught fire during runs" in err
    assert f"details: {error_log(ws)}" in err
    assert cli.main(["logs", "last"]) == 1
    text = error_log(ws).read_text()
    headers = [line for line in text.splitlines() if line.startswith("--- ")]
    assert [h.split(" ", 2)[2] for h in headers] == ["tui-ft runs", "tui-ft logs last"]
    assert text.count("Traceback") == 2 and "the disk caught fire during logs" in text
    assert not (ws.cache / "last-error.log").exists()


def test_recipes_json_lists_the_sft_recipes(cli_env):
    proc = tui_ft(cli_env, "recipes", "--json")
    assert proc.returncode == 0
    names = {r["name"] for r in json.loads(proc.stdout)}
    assert {"sft-lora", "sft-qlora", "sft-dora", "sft-full", "sft-freeze", "sft-prompt-tuning"} <= names


def test_sysinfo_json(cli_env):
    proc = tui_ft(cli_env, "sysinfo", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert {"versions", "gpu", "torch", "cpu", "memory"} <= set(info)
    assert info["versions"]["trl"] and info["versions"]["peft"]
    assert info["gpu"]["available"] is False and info["gpu"]["reason"]


def test_generate_unknown_model_exits_2(cli_env):
    proc = tui_ft(cli_env, "generate", "demo-tin", "--prompt", "hi")
    assert_clean_failure(proc)
    assert "did you mean demo-tiny" in proc.stderr


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["generate", "no-such-model", "--prompt", "hi"], "MODEL"),
        (["chat", "no-such-model"], "MODEL"),
        (["chat", "demo-tiny", "--compare", "no-such-model"], "--compare"),
        (["eval", "no-such-model", "--data", "chat.jsonl"], "MODEL"),
        (["train", "sft-lora", "--set", "model.name=no-such-model"], "model.name"),
        (["train", "grpo-lora", "--set", "rewards.models=[no-such-model]"], "rewards.models"),
    ],
)
def test_a_hub_model_offline_fails_at_once_naming_the_argument(cli_env, demo_ws, args, field):
    """Offline, a model that is neither local nor in the hub cache exits 2 naming the argument (or the
    recipe field), without the loader's retry loop and before any model loads or run is created."""
    before = set(demo_ws.runs.iterdir())
    proc = tui_ft(cli_env | {"HF_HUB_OFFLINE": "1"}, *args)
    assert_clean_failure(proc)
    assert f"{field}: 'no-such-model' is not a local folder" in proc.stderr
    assert "the hub cannot be reached (HF_HUB_OFFLINE is set)" in proc.stderr
    assert "retry" not in proc.stderr.lower() and proc.stdout == ""
    assert set(demo_ws.runs.iterdir()) == before


@pytest.mark.slow
def test_deepspeed_launcher_without_deepspeed_says_so(cli_env):
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    proc = tui_ft(
        cli_env,
        "train",
        "sft-lora",
        "--set",
        "launcher.type=accelerate",
        "--set",
        "launcher.config=deepspeed-zero2",
        "--set",
        "training.max_steps=1",
    )
    assert_clean_failure(proc)
    assert "DeepSpeed" in proc.stderr and "tui-ft[deepspeed]" in proc.stderr


@pytest.fixture()
def broken_runs_env(cli_env, tmp_path):
    """A workspace of its own holding a good run, one whose status.json is ill-typed, and a later one."""
    from tui_ft.runs.rundir import RunDir, Status

    home = tmp_path / "home"
    for run_id, state in [("20260101-000001-sft", "completed"), ("20260101-000003-dpo", "stopped")]:
        run = RunDir(home / "runs" / run_id)
        run.path.mkdir(parents=True)
        run.write_status(
            Status(id=run_id, name=run_id[16:], method=run_id[16:], state=state, step=2, loss=0.5)
        )
    bad = RunDir(home / "runs" / "20260101-000002-bad")
    bad.path.mkdir()
    bad.status_file.write_text(json.dumps({"id": bad.id, "name": "bad", "method": "sft", "step": "5"}))
    return dict(cli_env, TUI_FT_HOME=str(home)), bad


def test_runs_lists_an_unreadable_run_and_the_runs_after_it(broken_runs_env):
    env, bad = broken_runs_env
    proc = tui_ft(env, "runs")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines() if line.startswith(" 2026")]
    assert [(cols[0], cols[2]) for cols in lines] == [  # newest first, as the UI lists them
        ("20260101-000003-dpo", "stopped"),
        ("20260101-000002-bad", "unreadable"),
        ("20260101-000001-sft", "completed"),
    ]
    assert f'{bad.status_file}: step: expected an integer, got "5"' in proc.stdout
    listed = json.loads(tui_ft(env, "runs", "--json").stdout)
    assert [(r["id"], r["state"]) for r in listed] == [
        ("20260101-000003-dpo", "stopped"),
        ("20260101-000002-bad", "unreadable"),
        ("20260101-000001-sft", "completed"),
    ]
    assert listed[0]["loss"] == 0.5 and "step: expected an integer" in listed[1]["error"]["message"]


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "bad"],
        ["resume", "bad"],
        ["logs", "bad"],
        ["stop", "bad"],
        ["watch", "bad"],
        ["export", "bad", "--out", "exported"],
        ["generate", "20260101-000002-bad", "--prompt", "hi"],
    ],
)
def test_a_command_given_an_unreadable_run_exits_2_naming_its_status_file(broken_runs_env, tmp_path, args):
    env, bad = broken_runs_env
    proc = tui_ft(env, *args, cwd=tmp_path)
    assert_clean_failure(proc)
    assert f'tui-ft: {bad.status_file}: step: expected an integer, got "5"' in proc.stderr


# ------------------------------------------------------------------------------------------------
# output that copies cleanly: nothing wrapped when piped, commands never broken


def test_piped_recipes_print_every_description_whole_on_its_row(cli_env):
    rows = json.loads(tui_ft(cli_env, "recipes", "--json").stdout)
    proc = tui_ft(cli_env, "recipes")  # stdout is a pipe here
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for row in rows:
        (line,) = [line for line in lines if line.split()[:1] == [row["name"]]]
        assert " ".join(row["description"].split()) in line, line  # whole, on the recipe's own line
    assert "…" not in proc.stdout
    assert "train one:  tui-ft train sft-lora --set training.max_steps=50" in lines
    assert any(line.startswith("edit one:   cp ") and line.endswith("my-recipe.yaml") for line in lines)


def test_a_reward_runs_hint_is_one_line_when_piped(tmp_path, capsys):
    """The hint after a reward run is a command to paste: on one line however long, never wrapped at
    80 columns (stderr is not a terminal under pytest's capture)."""
    from tui_ft.commands.train import _print_outcome
    from tui_ft.runs.rundir import EventWriter, RunDir, Status

    run_id = "20261130-101010-a-reward-model-with-a-long-name-for-the-sample-pairs"
    run = RunDir(tmp_path / "runs" / run_id)
    run.path.mkdir(parents=True)
    status = Status(id=run_id, name=run_id[16:], method="reward", state="completed", step=8, loss=0.41)
    run.write_status(status)
    events = EventWriter(run.events_file)
    events.write("eval", step=8, eval_loss=0.38, eval_accuracy=0.9375, eval_margin=1.2345678)
    events.close()
    _print_outcome(run, status)
    err = capsys.readouterr().err.splitlines()
    assert f"  try:   tui-ft train grpo-lora --set 'rewards.models=[{run_id}]'" in err
    assert "  eval:  accuracy 0.9375, margin 1.235" in err
    assert f"  model: {run.final}" in err


def test_detach_prints_the_id_then_how_to_follow_and_runs_steps_prints_each_step(cli_env, demo_ws):
    sets = ["training.max_steps=4", "training.eval_steps=2", "training.logging_steps=1"]
    proc = tui_ft(cli_env, "train", "sft-lora", *[a for s in sets for a in ("--set", s)], "--detach")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    assert "\n" not in run_id and (demo_ws.runs / run_id).is_dir()  # stdout: the id alone, for scripts
    hints = proc.stderr.splitlines()
    for command in (
        f"tui-ft watch {run_id}",
        f"tui-ft logs {run_id} --follow",
        f"tui-ft stop {run_id}",
    ):
        assert any(line.strip().startswith(command + " ") for line in hints), proc.stderr
    assert any("then 3 (Runs)" in line for line in hints)
    from tests.conftest import wait_for_status
    from tui_ft.runs.rundir import RunDir

    status = wait_for_status(RunDir(demo_ws.runs / run_id), lambda s: s.is_final)
    assert status.state == "completed"
    shown = tui_ft(cli_env, "runs", run_id)
    assert "None" not in shown.stdout and "0.3758808374404907" not in shown.stdout
    table = tui_ft(cli_env, "runs", run_id, "--steps")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"{run_id} (sft, completed): 4 logged steps, 2 evaluations")
    header = next(line.split() for line in lines if line.split()[:2] == ["step", "loss"])
    assert header[:4] == ["step", "loss", "lr", "grad_norm"] and "mean_token_accuracy" in header
    steps = [line.split() for line in lines if line.split() and line.split()[0].isdigit()]
    assert [row[0] for row in steps[:4]] == ["1", "2", "3", "4"]
    doc = json.loads(tui_ft(cli_env, "runs", run_id, "--steps", "--json").stdout)
    assert [row["step"] for row in doc["train"]] == [1, 2, 3, 4]
    assert [row["step"] for row in doc["eval"]] == [2, 4] and "eval_loss" in doc["eval"][0]
    assert {"loss", "learning_rate", "grad_norm"} <= set(doc["train"][0])


def test_runs_steps_without_a_run_exits_2(cli_env):
    proc = tui_ft(cli_env, "runs", "--steps")
    assert_clean_failure(proc)
    assert "RUN: --steps shows one run's steps" in proc.stderr


def test_a_lone_data_file_name_that_is_not_there_exits_2(cli_env, tmp_path):
    proc = tui_ft(cli_env, "nothere.jsonl", cwd=tmp_path)
    assert_clean_failure(proc)
    assert "nothere.jsonl: FILE: no such file" in proc.stderr


def test_runs_steps_shows_each_methods_metrics_and_a_resume_replaces_later_steps(
    tmp_path, monkeypatch, capsys
):
    """The per-step table from a run's events: DPO's rewards and GRPO's reward, kl and completion
    lengths under short headers, the values at 4 significant digits; steps after a resume point are
    the resumed segment's."""
    from tui_ft.cli import main
    from tui_ft.runs.rundir import EventWriter, RunDir, Status

    monkeypatch.setenv("TUI_FT_HOME", str(tmp_path))
    dpo = RunDir(tmp_path / "runs" / "20260101-000001-dpo-lora")
    dpo.path.mkdir(parents=True)
    dpo.write_status(Status(id=dpo.id, name="dpo-lora", method="dpo", state="completed", step=3))
    ev = EventWriter(dpo.events_file)
    for step, margin in ((1, 0.01), (2, 0.02), (3, 0.9)):
        ev.write("train", step=step, loss=0.6931471805599453 - margin, learning_rate=5e-6, grad_norm=1.0)
    ev.write("resume", step=1)  # a resume from checkpoint-1: the earlier steps 2 and 3 are superseded
    for step in (2, 3):
        ev.write(
            "train",
            step=step,
            loss=0.5,
            learning_rate=5e-6,
            grad_norm=2.0,
            **{
                "rewards/chosen": 0.25,
                "rewards/rejected": -0.25,
                "rewards/margins": 0.5,
                "rewards/accuracies": 1.0,
            },
        )
    ev.write("eval", step=3, eval_loss=0.4, **{"eval_rewards/margins": 0.75})
    ev.close()
    assert main(["runs", dpo.id, "--steps"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{dpo.id} (dpo, completed): 3 logged steps, 1 evaluation"
    header = next(line.split() for line in out if line.split()[:2] == ["step", "loss"])
    assert header == ["step", "loss", "lr", "grad_norm", "rewards/chosen", "rewards/rejected",
                      "rewards/margins", "rewards/accuracies"]  # fmt: skip
    rows = [line.split() for line in out if line.split()[:1] in (["1"], ["2"], ["3"])]
    assert rows[0][:4] == ["1", "0.6831", "5.000e-6", "1.000"]
    assert rows[1] == ["2", "0.5000", "5.000e-6", "2.000", "0.2500", "-0.2500", "0.5000", "1.000"]
    assert ["3", "0.4000", "0.7500"] in rows  # the eval table: step, loss, rewards/margins

    grpo = RunDir(tmp_path / "runs" / "20260101-000002-grpo-lora")
    grpo.path.mkdir(parents=True)
    grpo.write_status(Status(id=grpo.id, name="grpo-lora", method="grpo", state="completed", step=1))
    ev = EventWriter(grpo.events_file)
    ev.write(
        "train",
        step=1,
        loss=-1.8378098332050286e-07,
        learning_rate=0.001,
        grad_norm=0.5695770382881165,
        reward=1.2324999570846558,
        reward_std=0.17745894193649292,
        kl=0.0,
        entropy=1.55,
        step_time=10.7,
        **{
            "completions/mean_length": 24.0,
            "completions/max_length": 31.0,
            "rewards/polite/mean": 1.0,
            "rewards/polite/std": 0.0,
            "clip_ratio/low_mean": 0.0,
        },
    )
    ev.close()
    assert main(["runs", grpo.id, "--steps"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(line.split() for line in out if line.split()[:2] == ["step", "loss"])
    assert header == [
        "step",
        "loss",
        "lr",
        "grad_norm",
        "reward",
        "reward_std",
        "kl",
        "mean_len",
        "max_len",
        "polite",
    ]
    assert ["1", "-1.838e-7", "0.001000", "0.5696", "1.232", "0.1775", "0", "24.00", "31.00", "1.000"] in [
        line.split() for line in out
    ]
    assert main(["runs", grpo.id, "--steps", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["train"][0]["rewards/polite/mean"] == 1.0 and "entropy" not in doc["train"][0]


# ------------------------------------------------------------------------------------------------
# in a real terminal (tmux): wrapped at its width, never cut; `tui-ft FILE` opens the file


@pytest.fixture()
def tmux_session(cli_env):
    """Start `tui-ft ARGS` in a detached 80x24 tmux session on a server of this test's own; yields a
    function that starts it and returns a screen reader; the session is killed afterwards."""
    import shutil
    import subprocess
    import uuid

    from tests.conftest import tui_ft_command

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/setup installs it when run as root)")
    server = ["tmux", "-L", f"tui-ft-cli-{uuid.uuid4().hex[:8]}", "-f", "/dev/null"]
    keys = ("TUI_FT_HOME", "HF_HUB_OFFLINE", "PATH", "PYTHONPATH")
    env_args = [arg for key in keys if key in cli_env for arg in ("-e", f"{key}={cli_env[key]}")]

    def start(*args: str, cwd: str | None = None, keep: bool = False):
        command = " ".join(["env", "-u", "COLUMNS", "-u", "LINES", *tui_ft_command(), *args])
        if keep:  # a command that ends: keep its output on the screen
            command += "; sleep 600"
        where = ["-c", cwd] if cwd else []
        history = ["-S", "-"] if keep else []  # a command's output that scrolled, not a UI's screen
        subprocess.run(
            [*server, "new-session", "-d", "-s", "t", "-x", "80", "-y", "24", *where, *env_args, command],
            check=True,
        )

        def screen() -> str:
            return subprocess.run(
                [*server, "capture-pane", "-p", *history, "-t", "t"], capture_output=True, text=True
            ).stdout

        return screen

    yield start
    subprocess.run([*server, "kill-server"], capture_output=True)


def _wait_for_screen(screen, condition, what: str, timeout: float = 60.0) -> str:
    import time

    deadline = time.monotonic() + timeout
    shown = ""
    while time.monotonic() < deadline:
        shown = screen()
        if condition(shown):
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s; the screen shows:\n{shown}")


@pytest.mark.slow
def test_recipes_in_an_80_column_terminal_wrap_descriptions_and_cut_none(cli_env, tmux_session):
    rows = json.loads(tui_ft(cli_env, "recipes", "--json").stdout)
    screen = tmux_session("recipes", keep=True)
    shown = _wait_for_screen(screen, lambda s: "my-recipe.yaml" in s, "the recipes table")  # the last line
    assert "…" not in shown
    assert "recipe             method · adapter · data / what it does" in shown  # two lines a recipe at 80
    words = " ".join(shown.split())
    for row in rows:  # every word of every description is on the screen (wrapped, not cut)
        for word in row["description"].split():
            assert word in words, (row["name"], word)
    assert all(len(line) <= 80 for line in shown.splitlines())
    assert "train one:  tui-ft train sft-lora --set training.max_steps=50" in shown


@pytest.mark.slow
def test_a_data_file_as_the_only_argument_opens_the_datasets_screen_on_it(
    cli_env, demo_ws, tmux_session, tmp_path
):
    import shutil

    shutil.copy(demo_ws.data / "chat.jsonl", tmp_path / "my-chats.jsonl")
    screen = tmux_session("my-chats.jsonl", cwd=str(tmp_path))  # relative to the current folder
    shown = _wait_for_screen(  # the whole screen drawn: a capture can land mid-draw
        screen,
        lambda s: "1 Datasets" in s and "my-chats.jsonl · format messages · 400 rows" in s and "user:" in s,
        "the Datasets screen on the file",
    )
    assert "user: What is 2 times 6?" in shown


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connecting is refused


def test_a_hub_model_with_the_hub_out_of_reach_fails_at_once(cli_env):
    """Online but with the hub unreachable (here: an endpoint that refuses connections), one short
    request decides: exit 2 naming the argument, no retries."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    env = {k: v for k, v in cli_env.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc = tui_ft(env | {"HF_ENDPOINT": endpoint}, "generate", "no-such-model", "--prompt", "hi")
    assert_clean_failure(proc)
    assert (
        f"MODEL: 'no-such-model' is not a local folder, a workspace model or a run, and the hub cannot be reached ({endpoint}: "
        in proc.stderr
    )
    assert "retry" not in proc.stderr.lower()


def test_a_model_the_hub_does_not_have_exits_2_naming_the_argument(cli_env):
    """A hub that answers that it has no such model (a local HTTP server as the endpoint): exit 2 at
    once naming the argument, before any loading."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hub(BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.end_headers()

        def do_GET(self):  # noqa: N802
            self.send_response(404 if self.path.startswith("/api/models/") else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in cli_env.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{server.server_address[1]}"
        proc = tui_ft(env, "generate", "someone/no-such-model", "--prompt", "hi")
    finally:
        server.shutdown()
    assert_clean_failure(proc)
    assert "MODEL: 'someone/no-such-model' is not a local folder" in proc.stderr
    assert "the hub has no model by that name (HTTP 404)" in proc.stderr
