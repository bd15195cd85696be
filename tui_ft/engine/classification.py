"""Sequence classification (method `classify`): transformers' Trainer on tokenized text with label ids,
and the metrics of every evaluation.

The label ids and class names come from the training data (`data.training.load_for_training`); the
model carries them as `config.id2label`/`label2id`, so the saved classifier names its classes. Each
evaluation reports, besides `eval_loss`: `eval_accuracy`; `eval_precision_macro`, `eval_recall_macro`,
`eval_f1_macro`; per class `eval_precision/<class>`, `eval_recall/<class>`, `eval_f1/<class>`; and
`eval_confusion_matrix` (rows: the true class, columns: the predicted one, in the order of
`eval_confusion_labels`, the class names).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tui_ft.engine.methods import TrainInputs


def class_names_of(model) -> list[str]:
    """The class names a classifier was built with, in label-id order."""
    config = getattr(model, "config", None)
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label[i]) for i in sorted(id2label)]


def classification_metrics(labels: Sequence[str]) -> Callable[[Any], dict[str, Any]]:
    """A Trainer `compute_metrics` for a classifier with classes `labels` (names in label-id order)."""
    names = list(labels)

    def compute(prediction) -> dict[str, Any]:
        import numpy as np
        from sklearn.metrics import (  # type: ignore[import-untyped]
            confusion_matrix,
            precision_recall_fscore_support,
        )

        logits = prediction.predictions
        if isinstance(logits, tuple):  # the logits first, then any other outputs the model returned
            logits = logits[0]
        predicted = np.asarray(logits).argmax(axis=-1)
        true = np.asarray(prediction.label_ids)
        ids = list(range(len(names)))
        precision, recall, f1, _ = precision_recall_fscore_support(
            true, predicted, labels=ids, average=None, zero_division=0
        )
        metrics: dict[str, Any] = {
            "accuracy": float((predicted == true).mean()) if len(true) else 0.0,
            "precision_macro": float(np.mean(precision)),
            "recall_macro": float(np.mean(recall)),
            "f1_macro": float(np.mean(f1)),
        }
        for i, name in enumerate(names):
            metrics[f"precision/{name}"] = float(precision[i])
            metrics[f"recall/{name}"] = float(recall[i])
            metrics[f"f1/{name}"] = float(f1[i])
        matrix = confusion_matrix(true, predicted, labels=ids)
        metrics["confusion_matrix"] = [[int(v) for v in row] for row in matrix]
        metrics["confusion_labels"] = names
        return metrics

    return compute


def classification_trainer_inputs(inputs: TrainInputs, args) -> dict[str, Any]:  # noqa: ARG001
    """The Trainer's datasets (text tokenized to data.max_length, `label` kept as the label id) and its
    metrics; transformers pads each batch itself (DataCollatorWithPadding, from the tokenizer)."""
    tokenizer, max_length = inputs.tokenizer, inputs.recipe.data.max_length

    def encode(dataset):
        if dataset is None:
            return None
        return dataset.map(
            lambda batch: tokenizer(batch["text"], truncation=max_length is not None, max_length=max_length),
            batched=True,
            remove_columns=["text"],
            desc="tokenizing",
        )

    return {
        "train_dataset": encode(inputs.train_dataset),
        "eval_dataset": encode(inputs.eval_dataset),
        "compute_metrics": classification_metrics(class_names_of(inputs.model)),
    }
