"""A Hugging Face `Trainer` run as people write it: a pretrained model loaded by name from
the hub cache (`from_pretrained("org/tiny-bert")`, safetensors weights, offline), a few
seeded training steps on the CPU and an evaluation, logged to MLflow by transformers' own
MLflow callback (`report_to=["mlflow"]`: params, losses, and the wall-clock metrics
`train_runtime`, `*_samples_per_second`, `*_steps_per_second`, `eval_runtime`).

No tokenizer (nothing to download): the token ids are made by a seeded generator.

    HF_HUB_OFFLINE=1 HF_HUB_CACHE=/path/to/hub python hf_trainer.py
"""

import mlflow
import torch
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments


class Tokens(torch.utils.data.Dataset):
    """Token ids made from a seeded generator (no tokenizer to download): the label is
    whether the sequence's first token is in the upper half of the vocabulary."""

    def __init__(self, size: int, vocab: int, length: int, seed: int) -> None:
        ids = torch.randint(4, vocab, (size, length), generator=torch.Generator().manual_seed(seed))
        self.rows = [{"input_ids": row, "attention_mask": torch.ones(length, dtype=torch.long),
                      "labels": int(row[0] >= vocab // 2)} for row in ids]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


torch.use_deterministic_algorithms(True)
model = AutoModelForSequenceClassification.from_pretrained("org/tiny-bert")
vocab = model.config.vocab_size
args = TrainingArguments(
    output_dir="outputs", max_steps=8, per_device_train_batch_size=8,
    per_device_eval_batch_size=16, learning_rate=5e-3, seed=0, data_seed=0, use_cpu=True,
    logging_steps=2, save_strategy="no", report_to=["mlflow"], disable_tqdm=True,
    dataloader_num_workers=0)
trainer = Trainer(model=model, args=args, train_dataset=Tokens(64, vocab, 12, seed=1),
                  eval_dataset=Tokens(32, vocab, 12, seed=2))
with mlflow.start_run(run_name="hf-trainer") as run:
    trainer.train()
    metrics = trainer.evaluate()
print("trained", run.info.run_id, round(metrics["eval_loss"], 6))
