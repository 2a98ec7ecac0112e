"""Appearance modelling (§3.4, App. A.2 Table 3 "Appearance Network").

Each detection gets an appearance descriptor: 1x1 convolutions on the res4 and res5 backbone maps (1024->256,
2048->256 for ResNet-50), each pooled with the detection's mask, concatenated (512) and passed through a
residual block (512->128->512). ``MODEL.RGNN.DETECTION_DESCRIPTOR`` "ours" L2-normalises the descriptor (our
choice, not stated in the paper: with D = 512 unit-norm descriptors the per-channel squared differences are
O(1/D)); "release" is the release's ``DetectionDescriptorExtractor`` (softmax pooling, 3-layer residual).

Each track models its appearance as a diagonal Gaussian N(mu, diag(sigma^2)); the track-detection edge gets the
log-likelihood of the detection under it (vis_rgnn/graph_inputs.py). After association the track is updated with
its detection at rates predicted from the track embedding (§3.4, eq. 4, a normal-inverse-chi^2-style update), in
the form of the authors' release (``TrackDescriptor._update_appearance``; :class:`AppearanceUpdate`):

    mu'      = (1 - eta_m) mu + eta_m x                                                             (4a)
    sigma^2' = (1 - eta_v) sigma^2 + eta_v v + eta_m eta_v / (eta_m + eta_v) (mu - x)^2                (4b)

with eta_m, eta_v = sigmoid(Linear(h)) and v = softplus(Linear(h)) (one scalar each, shared over channels). A new
track's Gaussian is the placeholder N(0, softplus(init_var)) after one such update with its detection (init_var a
stored per-channel parameter, initialised to INIT_LOG_VAR).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ResidualMLP",
    "ReleaseResidual",
    "AppearanceNetwork",
    "AppearanceUpdate",
    "gaussian_log_likelihood",
    "release_pool_weights",
    "release_appearance_update",
]
RELEASE_POOL_BACKGROUND = 10.0  # DetectionDescriptorExtractor.mask_pool: constant background score map


class ResidualMLP(nn.Module):
    """``Residual(dim, hidden)`` of Table 3: x + Linear(hidden, dim)(ReLU(Linear(dim, hidden)(x)))."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.relu(self.fc1(x)))


class ReleaseResidual(nn.Module):
    """The release's detection descriptor layers (runfile ``cm.Residual``): ReLU(x + L3(ReLU(L2(ReLU(L1(x)))))),
    dim -> hidden -> hidden -> dim (512-128-128-512)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(dim, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.fc3(F.relu(self.fc2(F.relu(self.fc1(x))))))


def release_pool_weights(scores: torch.Tensor, size) -> torch.Tensor:
    """The release's mask pooling weights (``DetectionDescriptorExtractor.mask_pool``): the M score maps
    (M, H, W) (logits; padded slots very negative) and a constant background map of 10 are resized bilinearly
    to the feature grid ``size`` = (h, w), a softmax over the M + 1 maps gives each detection its share of every
    cell, and each share map is divided by its sum + 1e-4. Returns (M, h*w); detections compete for pixels."""
    x = F.interpolate(scores[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
    background = torch.full_like(x[:1], RELEASE_POOL_BACKGROUND)
    share = torch.cat([background, x]).softmax(dim=0)[1:].flatten(1)
    return share / (share.sum(dim=1, keepdim=True) + 1e-4)


def mask_pool(features: torch.Tensor, masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mask-weighted average pooling. features: (C, h, w); masks: (M, H, W) in [0, 1] on any grid covering the
    same padded image. Returns (M, C)."""
    if masks.shape[-2:] != features.shape[-2:]:
        masks = F.adaptive_avg_pool2d(masks[:, None], features.shape[-2:])[:, 0]
    weight = masks.flatten(1)
    return (weight @ features.flatten(1).t()) / (weight.sum(dim=1, keepdim=True) + eps)


class AppearanceNetwork(nn.Module):
    """Per-detection appearance descriptors from backbone maps and detection masks (Table 3)."""

    def __init__(self, in_channels: Dict[str, int], channels: int = 256, hidden: int = 128, descriptor: str = "ours"):
        super().__init__()
        if descriptor not in ("ours", "release"):
            raise ValueError(f"MODEL.RGNN.DETECTION_DESCRIPTOR must be 'ours' or 'release', got {descriptor!r}")
        self.in_features, self.descriptor = list(in_channels), descriptor
        self.convs = nn.ModuleDict({f: nn.Conv2d(c, channels, 1) for f, c in in_channels.items()})
        self.out_dim = channels * len(in_channels)
        self.residual = (
            ResidualMLP(self.out_dim, hidden) if descriptor == "ours" else ReleaseResidual(self.out_dim, hidden)
        )

    def forward(
        self, features: Dict[str, torch.Tensor], masks: List[torch.Tensor], valid: Optional[List[torch.Tensor]] = None
    ) -> List[torch.Tensor]:
        """features: name -> (B, C, h, w); masks: B tensors (M_b, H, W); valid: B tensors (M_b,) bool (descriptor
        "release": padded slots get a zero descriptor, as the release's). Returns B tensors (M_b, D): unit-norm
        (ours) or the release's unnormalised descriptor of :func:`release_pool_weights`-pooled features.

        The 1x1 convolutions are linear, so they are applied after the mask pooling (only the M pooled vectors
        are read): pool(W x + b) = W pool(x) + b * s / (s + eps) with s the total pooling weight (eps 1e-6 ours;
        release: the weights are already divided by their sum + 1e-4, so s / (s + eps) is their sum). Same result
        as convolving the whole maps first."""
        out = []
        for b, m in enumerate(masks):
            pooled = []
            for f in self.in_features:
                conv, x = self.convs[f], features[f][b]
                w = conv.weight.flatten(1)  # (C, C_in)
                if self.descriptor == "release":
                    weight = release_pool_weights(m, x.shape[-2:])  # (M, h*w), normalised
                    scale = weight.sum(dim=1, keepdim=True)
                    avg = weight @ x.flatten(1).t()
                else:
                    weight = self._pool_weights(m, x.shape[-2:])  # (M, h*w)
                    total = weight.sum(dim=1, keepdim=True)
                    avg, scale = (weight @ x.flatten(1).t()) / (total + 1e-6), total / (total + 1e-6)  # (M, C_in)
                pooled.append(avg @ w.t() + conv.bias * scale)
            desc = self.residual(torch.cat(pooled, dim=1))
            if self.descriptor == "release":
                out.append(desc if valid is None else torch.where(valid[b][:, None], desc, 0.0))
            else:
                out.append(F.normalize(desc, dim=-1))
        return out

    def image_descriptor(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The release's whole-image descriptor (``DetectionDescriptorExtractor`` ``new_background``, the empty
        track's appearance observation): every 1x1-conv map averaged over the image, concatenated. features:
        name -> (B, C, h, w). Returns (B, A). The conv is linear, so it is applied to the averaged maps."""
        parts = []
        for f in self.in_features:
            conv = self.convs[f]
            parts.append(features[f].mean(dim=(2, 3)) @ conv.weight.flatten(1).t() + conv.bias)
        return torch.cat(parts, dim=1)

    @staticmethod
    def _pool_weights(masks: torch.Tensor, size) -> torch.Tensor:
        """(M, H, W) masks -> (M, h*w) pooling weights on a (h, w) feature grid (area average, as mask_pool)."""
        if masks.shape[-2:] != tuple(size):
            masks = F.adaptive_avg_pool2d(masks[:, None], tuple(size))[:, 0]
        return masks.flatten(1)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Channel-averaged log N(x | mean, diag(var)). Broadcasts over leading dims; reduces the last one."""
    return -0.5 * (math.log(2 * math.pi) + var.log() + (x - mean) ** 2 / var).mean(dim=-1)


def release_appearance_update(
    mean: torch.Tensor,
    var: torch.Tensor,
    x: torch.Tensor,
    eta_m: torch.Tensor,
    eta_v: torch.Tensor,
    var_new: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The release's update (``TrackDescriptor._update_appearance``): mean' = (1 - eta_m) mean + eta_m x;
    var' = (1 - eta_v) var + eta_v var_new + eta_m eta_v / (eta_m + eta_v) (mean - x)^2. mean, var, x: (..., D);
    eta_m, eta_v, var_new broadcast to (..., D)."""
    new_mean = (1 - eta_m) * mean + eta_m * x
    new_var = (1 - eta_v) * var + eta_v * var_new + (eta_m * eta_v / (eta_m + eta_v)) * (mean - x) ** 2
    return new_mean, new_var


class AppearanceUpdate(nn.Module):
    """Predicts the update rates eta_m, eta_v and the new variance v from the track embedding (§3.4; the release's
    ``TrackDescriptor`` out layers ``mean_eta`` -> ``alpha``, ``var_eta`` -> ``beta``, ``var_new``, bias initialised
    to INIT_LOG_VAR as the runfile's) and holds the raw per-channel initial variance ``init_var`` (A,) of a new
    track (initialised to INIT_LOG_VAR; variance = softplus of it).

    ``learn_variance=False`` is Table 1's "Appearance const. variance" ablation (``APPEARANCE.UPDATE
    constant_variance``) in the release's form: eta_v = 0, so (4b) returns sigma^2 unchanged and a track keeps its
    initial variance softplus(init_var) while the mean still moves by the learned eta_m; only alpha's layer exists
    then, so no parameter goes unused."""

    def __init__(self, dim: int, init_log_var: float = -7.0, appearance_dim: int = 0, learn_variance: bool = True):
        super().__init__()
        self.learn_variance = learn_variance
        self.alpha = nn.Linear(dim, 1)
        if learn_variance:
            self.beta, self.var_new = nn.Linear(dim, 1), nn.Linear(dim, 1)
            nn.init.constant_(self.var_new.bias, init_log_var)
        self.init_var = nn.Parameter(torch.full((appearance_dim,), float(init_log_var)))

    def forward(self, embedding: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(..., dim) -> eta_m, eta_v, v each (..., 1)."""
        eta_m = torch.sigmoid(self.alpha(embedding))
        if not self.learn_variance:
            zero = torch.zeros_like(eta_m)
            return eta_m, zero, zero
        return eta_m, torch.sigmoid(self.beta(embedding)), F.softplus(self.var_new(embedding))

    def update(
        self, mean: torch.Tensor, var: torch.Tensor, x: torch.Tensor, embedding: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Gaussian (mean, var) (..., A) updated with the descriptor x (..., A) given the track embedding."""
        new_mean, new_var = release_appearance_update(mean, var, x, *self(embedding))
        return new_mean, new_var if self.learn_variance else var  # eta_v = 0: var exactly (no 0 / 0 at eta_m = 0)

    def initial(self, x: torch.Tensor, embedding: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """A new track's Gaussian from its detection's descriptor x (..., A) and its first embedding: the update of
        the placeholder N(0, softplus(init_var)) with x (the release starts a track in a never-used slot, whose
        placeholder mean is 0), so mean = eta_m x."""
        return self.update(torch.zeros_like(x), F.softplus(self.init_var).expand_as(x), x, embedding)
