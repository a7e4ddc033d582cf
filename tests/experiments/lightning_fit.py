"""A PyTorch Lightning run as people write it: a `LightningModule` fitted by Lightning's
`Trainer` on the CPU (seeded, deterministic, a few steps), logged by Lightning's own
`MLFlowLogger` (its run, its metrics, and with `log_model=True` the `.ckpt` files that
`ModelCheckpoint` saved, as artifacts). The checkpoint's callback state holds the absolute
folder it was saved in, which lies under the logger's run id.

    python lightning_fit.py
"""

import os

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger


class Regression(L.LightningModule):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
                                       torch.nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


L.seed_everything(0, workers=True)
x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16,
                                     shuffle=True, num_workers=0)
logger = MLFlowLogger(experiment_name="lightning", run_name="fit", log_model=True,
                      tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"))
checkpoint = ModelCheckpoint(monitor="train_loss_epoch", mode="min", save_top_k=1)
trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, deterministic=True,
                    logger=logger, callbacks=[checkpoint], enable_progress_bar=False,
                    enable_model_summary=False, log_every_n_steps=1)
trainer.fit(Regression(), loader)
print("fitted", logger.run_id, checkpoint.best_model_path)
