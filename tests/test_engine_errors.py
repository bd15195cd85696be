"""Exceptions from the stack become a kind, a sentence and a fix that names recipe keys."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from tui_ft.engine.errors import KINDS, LossNotFinite, translate_exception
from tui_ft.errors import UserError, WorkFailed

torch = pytest.importorskip("torch")

OOM_KEYS = (
    "training.per_device_train_batch_size",
    "training.gradient_accumulation_steps",
    "training.activation_checkpointing: true",
    "model.quantization: 4bit",
    "data.max_length",
)
no_cuda_here = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _raised(call):
    """The exception a real call raises."""
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("the call did not raise")


def test_cuda_out_of_memory() -> None:
    failed = translate_exception(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert isinstance(failed, WorkFailed)
    assert failed.kind == "oom"
    assert failed.message == "Out of GPU memory (tried to allocate 2.00 GiB)."
    for key in OOM_KEYS:
        assert key in failed.hint


def test_cpu_out_of_memory_from_the_allocator_and_python() -> None:
    # The message torch's CPU allocator raises (seen from torch.empty(10**14, dtype=torch.uint8)).
    exc = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 107374182400 bytes. Error code 12 (Cannot allocate memory)"
    )
    failed = translate_exception(exc)
    assert failed.kind == "oom"
    assert failed.message == "Out of RAM (tried to allocate 100.00 GiB)."
    assert translate_exception(MemoryError()).kind == "oom"


def test_out_of_memory_wrapped_by_another_error_is_still_found() -> None:
    try:
        try:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        except torch.OutOfMemoryError as inner:
            raise RuntimeError("training step failed") from inner
    except RuntimeError as outer:
        failed = translate_exception(outer)
    assert failed.kind == "oom"
    assert "20.00 MiB" in failed.message


def test_disk_full_from_errno_and_from_a_real_write() -> None:
    exc = OSError(
        errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/x/checkpoints/checkpoint-10/model.safetensors"
    )
    failed = translate_exception(exc)
    assert failed.kind == "disk_full"
    assert failed.message == (
        "The disk is full while writing /runs/x/checkpoints/checkpoint-10/model.safetensors."
    )
    assert "training.save_total_limit" in failed.hint
    if Path("/dev/full").exists():

        def write() -> None:
            with open("/dev/full", "w") as handle:
                handle.write("x")
                handle.flush()

        assert translate_exception(_raised(write)).kind == "disk_full"


def test_from_pretrained_of_a_missing_local_directory(tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    missing = tmp_path / "no-such-model"
    exc = _raised(lambda: AutoModelForCausalLM.from_pretrained(str(missing)))
    assert isinstance(exc, OSError)
    failed = translate_exception(exc)
    assert failed.kind == "model_not_found"
    assert failed.message == f"Model directory {missing} does not exist."
    assert "model.name" in failed.hint


def test_from_pretrained_of_a_directory_that_is_not_a_model(tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    exc = _raised(lambda: AutoModelForCausalLM.from_pretrained(str(tmp_path)))
    failed = translate_exception(exc)
    assert failed.kind == "model_not_found"
    assert str(tmp_path) in failed.message and "not a model directory" in failed.message


def test_hub_unreachable_and_unknown_repo() -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    # What transformers raises when the hub is unreachable and the files are not cached.
    try:
        try:
            raise LocalEntryNotFoundError("cannot find the requested files in the local cache")
        except LocalEntryNotFoundError as inner:
            raise OSError(
                "We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them "
                "in the cached files.\nCheck your internet connection or see how to run the library in "
                "offline mode at 'https://huggingface.co/docs/transformers/installation#offline-mode'."
            ) from inner
    except OSError as exc:
        offline = translate_exception(exc)
    assert offline.kind == "model_not_found"
    assert "could not be reached" in offline.message
    assert "local directory" in offline.hint

    unknown = translate_exception(
        OSError(
            "someorg/no-such-model is not a local folder and is not a valid model identifier listed on "
            "'https://huggingface.co/models'\nIf this is a private repository, make sure to pass a token"
        )
    )
    assert unknown.kind == "model_not_found"
    assert unknown.message == (
        "someorg/no-such-model is neither a local directory nor a model on the Hugging Face Hub."
    )


def _tokenizer_without_chat_template():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "there": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def test_apply_chat_template_without_a_template() -> None:
    tokenizer = _tokenizer_without_chat_template()
    assert tokenizer.chat_template is None
    exc = _raised(
        lambda: tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False)
    )
    failed = translate_exception(exc)
    assert failed.kind == "chat_template"
    assert "no chat template" in failed.message
    assert "`model.chat_template`" in failed.hint and "base-format dataset" in failed.hint


def test_a_chat_template_that_refuses_the_messages() -> None:
    tokenizer = _tokenizer_without_chat_template()
    tokenizer.chat_template = (
        "{% if messages[0]['role'] != 'system' %}{{ raise_exception('Conversation must start with system') }}"
        "{% endif %}"
    )
    exc = _raised(
        lambda: tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False)
    )
    failed = translate_exception(exc)
    assert failed.kind == "chat_template"
    assert failed.message == "The chat template failed: Conversation must start with system."
    assert "roles" in failed.hint


@no_cuda_here
def test_asking_for_cuda_on_a_machine_without_it() -> None:
    failed = translate_exception(_raised(lambda: torch.zeros(1, device="cuda")))
    assert failed.kind == "no_cuda"
    assert "training.bf16: false" in failed.hint


@no_cuda_here
def test_bf16_training_arguments_without_a_gpu(tmp_path) -> None:
    from transformers import TrainingArguments

    exc = _raised(lambda: TrainingArguments(output_dir=str(tmp_path), bf16=True, report_to=[]))
    failed = translate_exception(exc)
    assert failed.kind == "no_cuda"
    assert "bf16" in failed.message
    assert "training.use_cpu: true" in failed.hint


def test_bitsandbytes_missing_or_unable_to_run(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail for real

    def load() -> None:
        import bitsandbytes  # noqa: F401

    failed = translate_exception(_raised(load))
    assert failed.kind == "bitsandbytes"
    assert "not installed" in failed.message
    assert "pip install" in failed.hint and "model.quantization" in failed.hint

    unsupported = translate_exception(
        RuntimeError(
            "None of the available devices `available_devices = None` are supported by the bitsandbytes "
            "version you have installed: `bnb_supported_devices = {'cuda'}`."
        )
    )
    assert unsupported.kind == "bitsandbytes"
    assert unsupported.message.startswith("bitsandbytes cannot run here: None of the available devices")


def test_loss_not_finite() -> None:
    failed = translate_exception(LossNotFinite(float("nan"), step=12))
    assert failed.kind == "nan"
    assert failed.message == "Training diverged: loss became nan at step 12."
    assert "training.learning_rate" in failed.hint


def test_interrupted() -> None:
    failed = translate_exception(KeyboardInterrupt())
    assert failed.kind == "interrupted"
    assert "tui-ft resume" in failed.hint


def test_peft_target_modules_that_are_not_in_the_model() -> None:
    failed = translate_exception(
        ValueError(
            "Target modules {'nope'} not found in the base model. Please check the target modules and try again."
        )
    )
    assert failed.kind == "error"
    assert "{'nope'}" in failed.message
    assert "adapter.target_modules" in failed.hint


def test_anything_else_keeps_its_type_and_first_line() -> None:
    failed = translate_exception(ValueError("something odd happened\n  deep detail\nmore"))
    assert failed.kind == "error"
    assert failed.message == "ValueError: something odd happened."
    assert failed.hint is None
    assert translate_exception(RuntimeError()).message == "RuntimeError."


def test_already_translated_errors_pass_through() -> None:
    done = WorkFailed("Out of GPU memory.", kind="oom", hint="smaller batch")
    assert translate_exception(done) is done
    user = translate_exception(UserError("bad value", field="training.learning_rate", hint="a float"))
    assert (user.kind, user.message, user.hint) == ("error", "bad value.", "a float")


def test_every_kind_is_documented() -> None:
    """The run-directory docs list the error kinds readers may meet in status.json."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "events.md").read_text()
    missing = [kind for kind in KINDS if f"`{kind}`" not in doc]
    assert not missing, f"docs/events.md does not list {missing}"
