"""Retina U-Net (Jaeger et al., 2018; nnDetection's detector): the project's U-Net with detection heads.

The U-Net's encoder and decoder give feature maps at every decoder level; the chosen levels are projected to
one width and fed to a :class:`~autounet.detection.heads.ClassificationHead` and a
:class:`~autounet.detection.heads.RegressionHead` shared across them; the U-Net's own full-resolution head is
the auxiliary segmentation head (foreground / background by default). Every part is injected, with a default
when ``None``, as in torchvision's ``RetinaNet``.

:meth:`RetinaUNet.forward` returns a :class:`RetinaUNetOutput` (logits, deltas, anchors, segmentation logits),
which the training objective's losses take; :meth:`RetinaUNet.detect` decodes boxes for inference through
:func:`postprocess_detections` (score threshold, top-k per level, NMS per class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from autounet.detection.anchors import AnchorGenerator
from autounet.detection.boxes import clip_boxes_to_image, remove_small_boxes
from autounet.detection.class_evidence import class_shares
from autounet.detection.clustering import batched_nms
from autounet.detection.coder import BoxCoder, detector_coder
from autounet.detection.detections import Detections
from autounet.detection.heads import ClassificationHead, RegressionHead
from autounet.networks.blocks import conv_class
from autounet.networks.registry import register_network
from autounet.networks.spec import UNetSpec
from autounet.networks.unet import UNet
from autounet.planning.plans import ConfigurationPlan, DetectionInference

__all__ = ["PostprocessSettings", "RetinaUNet", "RetinaUNetOutput", "build_planned_detector", "build_retina_unet",
           "default_anchor_generator", "default_levels", "level_strides", "postprocess_detections",
           "select_detections", "window_settings"]


@dataclass(frozen=True)
class RetinaUNetOutput:
    """What :meth:`RetinaUNet.forward` returns.

    Attributes:
        class_logits: ``(B, N, C)`` logits of every anchor of every level (levels concatenated).
        box_deltas: ``(B, N, 2 * ndim)`` regression deltas relative to the anchors.
        anchors: ``(N, 2 * ndim)`` anchors, the same for every image of the batch.
        num_anchors_per_level: How many of the ``N`` anchors each level holds.
        num_anchors_per_location: Anchor shapes per position of each level.
        seg_logits: ``(B, S, *spatial)`` logits of the auxiliary segmentation head at full resolution.
        image_shape: Spatial shape of the input (boxes are clipped to it).
    """

    class_logits: torch.Tensor
    box_deltas: torch.Tensor
    anchors: torch.Tensor
    num_anchors_per_level: tuple[int, ...]
    num_anchors_per_location: tuple[int, ...]
    seg_logits: torch.Tensor
    image_shape: tuple[int, ...]

    def float(self) -> RetinaUNetOutput:
        """The same output in float32 (the trainer computes losses in float32 after mixed precision)."""
        return replace(self, class_logits=self.class_logits.float(), box_deltas=self.box_deltas.float(),
                       anchors=self.anchors.float(), seg_logits=self.seg_logits.float())


@dataclass(frozen=True)
class PostprocessSettings:
    """How boxes are decoded from a :class:`RetinaUNetOutput` (nnDetection's model-level defaults).

    Attributes:
        score_threshold: Anchors scoring below this are dropped.
        topk_per_level: Highest-scoring (anchor, class) pairs kept per level before NMS.
        nms_iou: NMS drops a box overlapping a better one of its class by more than this IoU.
        detections_per_image: Boxes kept per image after NMS.
        min_size: Boxes smaller than this many voxels along any axis are dropped.
        class_evidence: Score classes by objectness times the class shares of the segmentation inside each box
            (:mod:`autounet.detection.class_evidence`); needs a class segmentation head (background and one
            channel per class), else it is ignored.
    """

    score_threshold: float = 0.05
    topk_per_level: int = 1000
    nms_iou: float = 0.6
    detections_per_image: int = 100
    min_size: float = 0.01
    class_evidence: bool = False


def level_strides(spec: UNetSpec) -> list[tuple[int, ...]]:
    """Per level (full resolution first; the last is the bottleneck), the per-axis stride of its feature map
    to the input. Level ``l`` is the decoder's output at stage ``l``, or the encoder's bottleneck for the last."""
    strides, total = [], [1] * spec.ndim
    for stride in spec.strides:
        total = [t * s for t, s in zip(total, stride, strict=True)]
        strides.append(tuple(total))
    return strides


def default_levels(spec: UNetSpec) -> tuple[int, ...]:
    """Decoder levels carrying the heads when the plan names none: from the third level down for a U-Net with
    four or more decoder levels (nnDetection's P2 upwards: full resolution and half resolution hold too many
    anchors), from the second for two or three levels, full resolution alone for one."""
    count = spec.num_stages - 1
    first = 2 if count >= 4 else 1 if count >= 2 else 0
    return tuple(range(first, count))


def default_anchor_generator(spec: UNetSpec, levels: Sequence[int]) -> AnchorGenerator:
    """Three anchor shapes per position, ``4 * stride * 2 ** (k / 3)`` voxels per axis (RetinaNet's scales),
    for when the plan carries no shapes fitted to the training boxes."""
    strides = level_strides(spec)
    chosen = [strides[level] for level in levels]
    shapes = [[tuple(4.0 * s * 2 ** (k / 3) for s in stride) for k in range(3)] for stride in chosen]
    return AnchorGenerator(shapes, chosen)


class RetinaUNet(nn.Module):
    """U-Net encoder and decoder, detection heads on chosen decoder levels, auxiliary segmentation head.

    Args:
        unet: The U-Net; its encoder and decoder give the features, its heads (built without deep supervision)
            are the segmentation head on the full-resolution decoder output.
        num_classes: Foreground classes of the boxes.
        levels: Decoder levels (0 = full resolution) carrying the detection heads; ``None``:
            :func:`default_levels`.
        anchor_generator: Anchors of those levels, in the same order; ``None``: :func:`default_anchor_generator`.
        classification_head: ``None``: a :class:`ClassificationHead` on the projected features.
        regression_head: ``None``: a :class:`RegressionHead` on the projected features.
        coder: Decodes the deltas in :meth:`detect`; ``None``: :func:`~autounet.detection.coder.detector_coder`.
        head_channels: Width the chosen levels are projected to; ``None``: their widest, at most 128.
        postprocess: Box decoding settings of :meth:`detect`.
    """

    def __init__(self, unet: UNet, num_classes: int, levels: Sequence[int] | None = None,
                 anchor_generator: AnchorGenerator | None = None, classification_head: nn.Module | None = None,
                 regression_head: nn.Module | None = None, coder: BoxCoder | None = None,
                 head_channels: int | None = None, postprocess: PostprocessSettings | None = None) -> None:
        super().__init__()
        spec = unet.spec
        self.levels = tuple(levels) if levels is not None else default_levels(spec)
        if not self.levels or any(not 0 <= level < spec.num_stages for level in self.levels):
            raise ValueError(f"detection levels {self.levels} are not levels 0..{spec.num_stages - 1} (the last: "
                             "the bottleneck)")
        if unet.deep_supervision:
            raise ValueError("the U-Net of a Retina U-Net has one (full-resolution) segmentation head")
        self.unet = unet
        self.num_classes = num_classes
        self.anchor_generator = anchor_generator or default_anchor_generator(spec, self.levels)
        expected = [level_strides(spec)[level] for level in self.levels]
        if self.anchor_generator.strides != expected:
            raise ValueError(f"anchor strides {self.anchor_generator.strides} differ from the levels' {expected}")
        anchors_per_location = self.anchor_generator.num_anchors_per_location()
        if len(set(anchors_per_location)) != 1:
            raise ValueError("heads shared across levels need the same number of anchor shapes on every level")
        widths = [spec.features_per_stage[level] for level in self.levels]
        width = head_channels or min(max(widths), 128)
        self.projections = nn.ModuleList(conv_class(spec.ndim)(w, width, 1) for w in widths)
        self.classification_head = classification_head or ClassificationHead(
            spec.ndim, width, anchors_per_location[0], num_classes)
        self.regression_head = regression_head or RegressionHead(spec.ndim, width, anchors_per_location[0])
        self.coder = coder or detector_coder()
        self.postprocess = postprocess or PostprocessSettings()

    def forward(self, x: torch.Tensor) -> RetinaUNetOutput:
        """Heads' outputs for ``x`` of shape ``(B, C, *spatial)``; spatial size divisible by the total stride."""
        skips = self.unet.encoder(x)
        decoder_levels = self.unet.spec.num_stages - 1
        features = self.unet.decoder(skips, min(max(self.levels) + 1, decoder_levels))  # full resolution first
        if max(self.levels) == decoder_levels:  # the coarsest level is the bottleneck (nnDetection's deepest head)
            features = [*features, skips[-1]]
        seg_logits = self.unet.heads(features[:self.unet.heads.num_inputs])
        chosen = [projection(features[level]) for projection, level in zip(self.projections, self.levels,
                                                                            strict=True)]
        anchors = self.anchor_generator([f.shape[2:] for f in chosen], device=x.device)
        return RetinaUNetOutput(
            class_logits=self.classification_head(chosen), box_deltas=self.regression_head(chosen),
            anchors=torch.cat(anchors), num_anchors_per_level=tuple(len(a) for a in anchors),
            num_anchors_per_location=tuple(self.anchor_generator.num_anchors_per_location()),
            seg_logits=seg_logits, image_shape=tuple(x.shape[2:]))

    @torch.no_grad()
    def detect(self, x: torch.Tensor) -> list[Detections]:
        """Boxes, scores and classes per image of ``x`` (the module's train/eval mode is left as it is)."""
        return postprocess_detections(self(x), self.coder, self.postprocess)

    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def postprocess_detections(output: RetinaUNetOutput, coder: BoxCoder,
                           settings: PostprocessSettings | None = None) -> list[Detections]:
    """Decode a :class:`RetinaUNetOutput` into boxes per image: per level, the (anchor, class) pairs scoring at
    least the threshold, at most ``topk_per_level`` of them; their boxes decoded; then
    :func:`select_detections` (clipping, tiny boxes, NMS within each class, the best ``detections_per_image``).

    With ``settings.class_evidence`` and a class segmentation (``1 + C`` channels), anchors are chosen by their
    objectness (best class score) instead, and each decoded box enters once per class with its objectness
    times that class's share of the segmentation inside the box.

    Args:
        output: The network's output.
        coder: The box coder the deltas were trained with.
        settings: Thresholds; ``None``: :class:`PostprocessSettings` defaults.
    """
    settings = settings or PostprocessSettings()
    num_classes = output.class_logits.shape[-1]
    evidence = settings.class_evidence and output.seg_logits.shape[1] == num_classes + 1
    results = []
    for image in range(output.class_logits.shape[0]):
        scores = torch.sigmoid(output.class_logits[image].detach().float())
        if evidence:  # one candidate per anchor, by objectness
            scores = scores.max(dim=1, keepdim=True).values
        boxes, kept_scores, classes, start = [], [], [], 0
        for count in output.num_anchors_per_level:
            level_scores = scores[start:start + count].flatten()
            candidates = torch.nonzero(level_scores >= settings.score_threshold).flatten()
            top = level_scores[candidates].topk(min(settings.topk_per_level, len(candidates))).indices
            candidates = candidates[top]
            anchor_index = start + torch.div(candidates, scores.shape[1], rounding_mode="floor")
            boxes.append(coder.decode(output.box_deltas[image, anchor_index].detach().float(),
                                      output.anchors[anchor_index].float()))
            kept_scores.append(level_scores[candidates])
            classes.append(candidates % scores.shape[1])
            start += count
        found = Detections(torch.cat(boxes), torch.cat(kept_scores), torch.cat(classes))
        if evidence:
            found = _with_class_evidence(found, output.seg_logits[image], output.image_shape,
                                         settings.score_threshold)
        results.append(select_detections(found, output.image_shape, settings))
    return results


def _with_class_evidence(found: Detections, seg_logits: torch.Tensor, shape: Sequence[int],
                         score_threshold: float) -> Detections:
    """Each box once per class: objectness times the class's share of the segmentation inside the box."""
    boxes = clip_boxes_to_image(found.boxes, shape)
    shares = class_shares(torch.softmax(seg_logits.detach().float(), dim=0), boxes)
    scores = found.scores[:, None] * shares
    box_index, classes = torch.nonzero(scores >= score_threshold, as_tuple=True)
    return Detections(boxes[box_index], scores[box_index, classes], classes)


def select_detections(found: Detections, shape: Sequence[int], settings: PostprocessSettings) -> Detections:
    """The boxes of one image or window that :func:`postprocess_detections` keeps: scoring at least the
    threshold, clipped to ``shape``, not smaller than ``min_size``, surviving NMS within each class, the best
    ``detections_per_image`` of them (by decreasing score)."""
    found = found.select(found.scores >= settings.score_threshold)
    boxes = clip_boxes_to_image(found.boxes, shape)
    keep = remove_small_boxes(boxes, settings.min_size)
    boxes, scores, classes = boxes[keep], found.scores[keep], found.classes[keep]
    keep = batched_nms(boxes, scores, classes, settings.nms_iou)[:settings.detections_per_image]
    return Detections(boxes[keep], scores[keep], classes[keep])


@register_network("retina_unet")
def build_retina_unet(spec: UNetSpec, in_channels: int, num_classes: int, deep_supervision: bool = False,
                      levels: Sequence[int] | None = None,
                      anchor_shapes: Sequence[Sequence[Sequence[float]]] | None = None,
                      class_segmentation: bool = False) -> RetinaUNet:
    """A Retina U-Net on the U-Net a plan describes (the ``retina_unet`` network of the registry).

    Args:
        spec: Topology of the U-Net.
        in_channels: Input channels.
        num_classes: Foreground classes of the boxes (the registry's ``num_outputs``).
        deep_supervision: Ignored: the segmentation head is auxiliary and trained at full resolution only
            (accepted so the registry's builder signature fits).
        levels: Decoder levels carrying the heads (the plan's); ``None``: :func:`default_levels`.
        anchor_shapes: Per chosen level, its anchor shapes in voxels (the plan's fitted shapes); ``None``:
            :func:`default_anchor_generator`.
        class_segmentation: The auxiliary head segments background and each class (``1 + num_classes``
            channels) instead of foreground and background.
    """
    del deep_supervision
    chosen = tuple(levels) if levels is not None else default_levels(spec)
    generator = None
    if anchor_shapes is not None:
        strides = level_strides(spec)
        generator = AnchorGenerator(anchor_shapes, [strides[level] for level in chosen])
    # By default the auxiliary head segments foreground from background, whatever the class (nnDetection's
    # choice); a class segmentation also gives class evidence at full resolution (detection.class_evidence).
    unet = UNet(spec, in_channels, num_classes + 1 if class_segmentation else 2, deep_supervision=False)
    return RetinaUNet(unet, num_classes, chosen, generator)



def window_settings(inference: DetectionInference, class_evidence: bool = False) -> PostprocessSettings:
    """The per-window box decoding of a detector's inference parameters: every box down to the score threshold
    (at least 0.01, nnDetection's model-level cut, so that NMS has a bounded number of candidates), the
    candidates per level, NMS IoU, boxes per window (the boxes per image) and minimum size (at least 0.01)."""
    return PostprocessSettings(
        score_threshold=max(inference.score_threshold, 0.01), topk_per_level=inference.candidates_per_level,
        nms_iou=inference.nms_iou, detections_per_image=inference.detections_per_image,
        min_size=max(inference.min_size, 0.01), class_evidence=class_evidence)


def build_planned_detector(configuration: ConfigurationPlan, in_channels: int,
                           inference: DetectionInference | None = None) -> RetinaUNet:
    """The Retina U-Net of a detection configuration: its U-Net, its head levels and fitted anchor shapes, its
    per-window box decoding (:func:`window_settings`) from ``inference`` (default: the plan's parameters).

    Raises:
        ValueError: The configuration carries no detection plan.
    """
    plan = configuration.detection
    if plan is None:
        raise ValueError(f"configuration '{configuration.name}' is no detection configuration")
    network = build_retina_unet(configuration.network, in_channels, plan.num_classes, levels=plan.head_levels,
                                anchor_shapes=plan.anchor_shapes, class_segmentation=plan.class_segmentation)
    # Fusion across windows applies the parameters once more to the fused boxes (BoxFusionSettings).
    network.postprocess = window_settings(inference or plan.inference, plan.class_segmentation)
    return network
