"""NaturalFinger (Yang et al., IJCAI 2023): natural fingerprints from GAN latents.

Paper: "NaturalFinger: Generating Natural Fingerprint with Generative Adversarial Networks".
Algorithm 1 as three stages (details and defaults in ``../shared/paper/NOTES.md``):

1. :func:`prepare` (:mod:`.prepare`): draw latents and generator classes, keep those every
   positive model labels alike (``y_orig``), label them ``y_adv`` by FGSM on the negatives;
2. :func:`optimise` (:mod:`.optimise`): SGD on z only of
   mean_pos CW(pos(T(G(z))), y_orig) + mean_neg CW(neg(T(G(z))), y_adv) + lambda * L_D(D(G(z))),
   mini-batched over models (4 + 4 per step), one random transformation T per step, the models'
   part computed by a gradient engine (:mod:`.engine`; the Ray engine shards it);
3. :func:`screened_set` (:mod:`.screen`): keep images that, under the screening
   transformations, every positive labels ``y_orig`` and the negatives do not.

The registered method (``nf_dist.fingerprint.methods.naturalfinger``) composes them. Everything
here is plain torch.
"""

from nf_dist.fingerprint.naturalfinger.config import NaturalFingerConfig
from nf_dist.fingerprint.naturalfinger.engine import (
    Critic,
    LocalModelGradients,
    ModelGradients,
    ModelStep,
    Objective,
    StepModels,
    model_group_loss,
    partial_model_gradient,
)
from nf_dist.fingerprint.naturalfinger.images import channels_last, frozen
from nf_dist.fingerprint.naturalfinger.optimise import (
    Checkpointing,
    LatentObserver,
    optimise,
)
from nf_dist.fingerprint.naturalfinger.prepare import (
    Prepared,
    Targets,
    draw_candidates,
    fgsm_labels,
    prepare,
    random_labels,
    select_initial,
)
from nf_dist.fingerprint.naturalfinger.progress import modules_digest
from nf_dist.fingerprint.naturalfinger.schedule import GenerationHistory, StepPlan, plan_steps
from nf_dist.fingerprint.naturalfinger.screen import screen, screened_set

__all__ = [
    "Checkpointing",
    "GenerationHistory",
    "LatentObserver",
    "Critic",
    "LocalModelGradients",
    "ModelGradients",
    "ModelStep",
    "NaturalFingerConfig",
    "Objective",
    "Prepared",
    "StepModels",
    "StepPlan",
    "Targets",
    "draw_candidates",
    "fgsm_labels",
    "channels_last",
    "frozen",
    "model_group_loss",
    "modules_digest",
    "optimise",
    "partial_model_gradient",
    "plan_steps",
    "prepare",
    "random_labels",
    "screen",
    "screened_set",
    "select_initial",
]
