"""A run's evaluations: embedding held-out pairs, selection's validation AUC, the metrics.

The trainer steps the model; this role only reads it (in eval mode, without
gradients), so the same evaluation serves the step-0 check, the ~50
validations of ``train.select = "best"`` and the final metrics.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.utils.data import DataLoader

from negscale import distributed, oracle
from negscale.config import Recipe
from negscale.data import loader
from negscale.data.base import PairedData, PairSet
from negscale.encoders.dual import DualEncoder
from negscale.errors import NegscaleError
from negscale.losses import in_batch_loss
from negscale.metrics import evaluate, mean_auc
from negscale.runtime import Runtime


class Evaluator:
    """Held-out and validation evaluations of ``model`` for one recipe."""

    def __init__(
        self,
        model: DualEncoder,
        data: PairedData,
        train_split: PairSet,
        recipe: Recipe,
        runtime: Runtime,
        workers: int,
        val_split: PairSet | None = None,
    ) -> None:
        self.model, self.data, self.train_split = model, data, train_split
        self.recipe, self.runtime, self.workers = recipe, runtime, workers
        self.val_split = val_split
        self._val_loader: DataLoader | None = None  # built at the first validation

    @torch.no_grad()
    def embed(self, split: PairSet, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, text) embeddings of the first ``limit`` items of ``split`` (all), on the CPU."""
        count = len(split) if limit is None else min(limit, len(split))
        size = self.recipe.eval.batch_size
        rows = loader.chunk_loader(
            split, range(count), size, workers=self.workers, pin=self.runtime.pin
        )
        return self._embed(loader.chunks(rows))

    @torch.no_grad()
    def _embed(
        self, inputs: Iterable[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        imgs, txts = [], []
        dev, pin = self.runtime.device, self.runtime.pin
        for x, y in inputs:
            with self.runtime.autocast:
                img, txt = self.model(x.to(dev, non_blocking=pin), y.to(dev, non_blocking=pin))
            imgs.append(img.float().cpu())
            txts.append(txt.float().cpu())
        return torch.cat(imgs), torch.cat(txts)

    @torch.no_grad()
    def embed_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text embeddings of ``tokens`` (e.g. the class prompts), in eval batches."""
        self.model.eval()
        dev, size = self.runtime.device, self.recipe.eval.batch_size
        out = []
        for part in tokens.split(size):
            with self.runtime.autocast:
                out.append(self.model.encode_text(part.to(dev)).float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def validation_auc(self) -> float:
        """AUC on the validation pairs, at the recipe's retrieval level (what selection ranks).

        Under torchrun each rank embeds only its share of the pairs and the
        shares are gathered, so every rank scores the same embeddings, gets
        the same AUC and keeps the same weights. The pairs' loader is kept
        until :meth:`close` (its workers persist between the ~50 evaluations).
        """
        total, info = len(self.validation_split()), self.runtime.dist
        world = info.world_size if total >= info.world_size else 1
        img, txt = self._embed(self.validation_inputs())
        img = distributed.gather_shares(img, total, world, self.runtime.device)
        txt = distributed.gather_shares(txt, total, world, self.runtime.device)
        return self.validation_score(img, txt)

    def validation_split(self) -> PairSet:
        if self.val_split is None:
            raise RuntimeError('validation pairs exist only with train.select = "best"')
        return self.val_split

    def validation_inputs(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of the validation pairs, (x, y) chunk by chunk, from a kept loader."""
        total, info = len(self.validation_split()), self.runtime.dist
        world, rank = (info.world_size, info.rank) if total >= info.world_size else (1, 0)
        if self._val_loader is None:
            self._val_loader = loader.chunk_loader(
                self.validation_split(),
                distributed.share(total, world, rank),
                self.recipe.eval.batch_size,
                workers=self.workers,
                pin=self.runtime.pin,
                persistent=True,
            )
        return loader.chunks(self._val_loader)

    def validation_score(self, img: torch.Tensor, txt: torch.Tensor) -> float:
        """Selection's metric of all the validation pairs' embeddings."""
        class_level = self.recipe.eval.retrieval == "class"
        return mean_auc(img, txt, self.validation_split().labels, class_level=class_level)

    def close(self) -> None:
        """No more validations: the validation loader's persistent workers end here."""
        self._val_loader = None

    @torch.no_grad()
    def evaluate(self) -> dict[str, float | None]:
        """Held-out retrieval metrics, zero-shot top-1, fixed-protocol val losses, ground truth.

        ``val_loss`` (symmetric InfoNCE) and ``val_loss_paper`` (the paper's
        form) score every held-out pair against all other held-out items at the
        model's tau: their chance level depends only on the evaluation size,
        never on the m the run trained with (docs/fitting.md). Both use the
        tiled LSE above ``negatives.tile`` columns, never a dense n_eval^2
        matrix. Retrieval is instance-level unless ``eval.retrieval = "class"``.
        With an oracle (synthetic vectors) and instance-level retrieval, the
        oracle columns of :mod:`negscale.oracle` are filled in; else null.
        """
        img, txt = self.embed(self.data.eval)
        class_level = self.recipe.eval.retrieval == "class"
        labels = self.data.eval.labels
        if class_level and labels is None:
            raise NegscaleError("eval.retrieval: 'class' needs labelled evaluation data")
        out = evaluate(img, txt, labels, self._prototypes(), class_level=class_level)
        tau, tile = float(self.model.tau), self.recipe.negatives.tile
        for key, form in (("val_loss", "infonce"), ("val_loss_paper", "paper")):
            out[key] = float(in_batch_loss(img, txt, tau=tau, form=form, tile=tile))
        reference = None if class_level else oracle.oracle_reference(self.data, tau)
        out.update(oracle.ground_truth(reference, out["auc"], out["val_loss_paper"], tau))
        return out

    def _prototypes(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Zero-shot class prototypes: the class prompts' exact template ensemble, else
        the captions of the first ``eval.prototypes`` labelled training pairs; None."""
        if self.data.prompts is not None:
            return self.embed_text(self.data.prompts[0]), self.data.prompts[1]
        if self.train_split.labels is not None:
            _, proto_txt = self.embed(self.train_split, self.recipe.eval.prototypes)
            return proto_txt, self.train_split.labels[: len(proto_txt)]
        return None
