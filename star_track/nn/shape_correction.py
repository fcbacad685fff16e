"""A learned linear correction of the decoded landmarks in the face's own frame (issue 25's shape stage).

A heatmap network places each landmark from local evidence; its errors are not independent across the face: a
turned head moves the jaw points along the contour the same way, a smile pulls the mouth corners and the chin
together. A linear map of the whole predicted shape, fitted on a model's own predictions for labelled training
faces (``train.shape_correction``), removes the part of the error that the shape itself predicts, as the shape
prior of a cascaded regressor does. In the face frame (centroid at 0, outer eye corners level, their distance
1) the correction is ``a' = a + W a + b``; ``W`` (2N, 2N) and ``b`` (2N) are all it stores (18 k
multiply-accumulates for 68 points). The exported graph appends it after the decoding
(``export.shape_correction``), so every engine outputs corrected landmarks; the covariances are left as the
heatmaps give them (the correction moves a point by a fraction of its uncertainty).
"""
from __future__ import annotations

import torch
from torch import nn


_J = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])  # e @ _J = e turned by +90 degrees


def face_frame(points: torch.Tensor, eyes: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The face frame of (B, N, 2) points: their centroid (B, 1, 2) and E (B, 2, 2), rows the eye vector e (outer
    corner to outer corner) and e turned by 90 degrees; a point x is ``(x - centre) @ E.T / |e|²`` in the frame
    and ``centre + a @ E`` back. (A few whole-array products: the exported graph stays ~20 nodes.)"""
    centre = points.mean(dim=1, keepdim=True)
    eye = points[:, eyes[1]:eyes[1] + 1] - points[:, eyes[0]:eyes[0] + 1]  # (B, 1, 2)
    return centre, torch.cat([eye, eye @ _J.to(points.dtype)], dim=1)


def into_frame(points: torch.Tensor, frame: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(B, M, 2) points mapped into a face ``frame`` of :func:`face_frame`."""
    centre, e = frame
    return (points - centre) @ e.transpose(1, 2) / (e[:, :1] * e[:, :1]).sum(dim=2, keepdim=True).clamp_min(1e-18)


def from_face_frame(face: torch.Tensor, frame: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`into_frame`."""
    centre, e = frame
    return centre + face @ e


class ShapeCorrection(nn.Module):
    """``points (B, N, 2) -> corrected points``: ``a + W a + b`` in the face frame (see the module docs)."""

    step: torch.Tensor
    bias: torch.Tensor

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, eyes: tuple[int, int]):
        super().__init__()
        n2 = weight.shape[0]
        if weight.shape != (n2, n2) or bias.shape != (n2,) or n2 % 2:
            raise ValueError(f"weight must be (2N, 2N) and bias (2N,), got {tuple(weight.shape)}, {tuple(bias.shape)}")
        self.register_buffer("step", (torch.eye(n2, dtype=torch.float64) + weight.double()).T.float())  # (I + W)ᵀ
        self.register_buffer("bias", bias.float())
        self.eyes = (int(eyes[0]), int(eyes[1]))
        self.n = n2 // 2

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        frame = face_frame(points, self.eyes)
        flat = into_frame(points, frame).reshape(-1, 2 * self.n)
        return from_face_frame((flat @ self.step.to(points.dtype) + self.bias.to(points.dtype)).reshape(-1, self.n, 2),
                               frame)
