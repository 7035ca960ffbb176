"""The paper's statements each claim encodes: per claim id its kind (dynamics.paper.kinds), the rate, bound or sign
it states, the statement in our words with where the paper makes it, and for the coupling which normalisation
(reading) it is tested in. The claim builders and `reproduce --rejudge` both read this table, so a claim's encoding
lives in one place; docs/theory.md §7–§8 explain each choice. The paper's body is not available to us: the places
are its abstract and figures (arXiv 2512.21075), the words ours.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Statement", "STATEMENTS", "READINGS"]


@dataclass(frozen=True)
class Statement:
    kind: str                   # rate, bound, persists, vanishes, contrast
    wording: str                # the paper's statement in our words, with its place in the paper
    value: float | None = None  # the rate (rate), the bound (bound), the sign +1/−1 (contrast)
    reading: str = ""           # the coupling's normalisation: message, stream, coherent, incoherent (READINGS)
    against: dict = field(default_factory=dict)  # contrast: the reference setting's `where`
    group: str = ""             # the paper's statement in a few words: the claims testing one statement share it
    shown: str = ""             # how the verdict names the paper's set, where the kind's own words (a rate's) do not fit


READINGS = {
    "message": "per block, the message W(0)u/√n before the branch factor: coupling_fwd = ‖(2)‖²/n",
    "stream": "per block, its share of the residual stream: (β²/L)·coupling_fwd, one power of L smaller",
    "coherent": "accumulated over blocks as the norm of the sum, coupling_acc = ‖Σ_k (β/√L)(2)_k‖²/n",
    "incoherent": "accumulated over blocks as the sum of the norms, (β²/L)·Σ_k coupling_fwd(k)",
}

_INIT = "abstract: at initialisation the transpose coupling is a finite-width effect, vanishing like 1/n"
_SURVIVES = "abstract: during training a coupling survives the infinite-width limit"
_O_L2 = "abstract: the coupling term is O(L^-2)"
_NEGLIGIBLE = "abstract: under depth-μP the accumulated contribution of the coupling becomes negligible as L → ∞"
_FIG1 = "abstract and Fig. 1: finite-width, finite-depth dynamics approach the limit (NFD) with an O(1/L) " \
        "depth-discretisation error"
_FIG2 = "Fig. 2: only under depth-μP do reused and decoupled backward come together as L grows"
_TRANSFER = "abstract: depth-μP transfers hyperparameters across depth"
_BLOCKS = "abstract: two-layer blocks lose internal feature learning as L grows unless the inner learning rate " \
          "is corrected"
_COLLAPSE = "arXiv 2512.21075v1: with two-layer blocks the first internal layer's own feature learning collapses " \
            "like 1/√L (a_learn, a squared norm: L^-1)"
_CORRECTED = "arXiv 2512.21075v1: the depth-aware inner rate η₁ = η_c·n·√L (α = 1/2) keeps the first internal " \
             "layer's feature learning as L grows"
_OVER = "our power counting, not the paper's (docs/theory.md §7): α = 1 over-corrects, a_learn ∝ L^(2α−1) grows " \
        "with depth faster than at α = 1/2"

# the paper's statements in a few words: the claims testing one statement share its group
G_INIT, G_SURV, G_L2, G_ACC = ("coupling at init: O(1/n)", "coupling survives n → ∞", "coupling term O(L^-2)",
                               "accumulated coupling negligible")
G_FIG1, G_FLOOR, G_FIG2, G_FIG3 = ("O(1/L) to the limit (Fig. 1)", "width floor (Fig. 1)",
                                   "reused ≈ decoupled only under depth-μP (Fig. 2)",
                                   "non-degenerate covariance (Fig. 3)")
G_WIDTH, G_BLOCKS, G_LR = ("width limit: n^-1/2", "two-layer blocks need the LR correction",
                           "hyperparameter transfer in depth")
_FLOOR = "Fig. 1: the width floor of the finite-vs-limit error, n^-1/2 per realisation (our reading; the figure " \
         "fits 1/n to seed averages)"
_DM = {"setting": "param=depth-mup", "usable": True}

STATEMENTS: dict[str, Statement] = {
    "init-width": Statement("rate", "abstract (the width limit the paper builds on): a finite-width net approaches "
                                    "it like n^-1/2 per realisation (our reading)", -0.5, group=G_WIDTH),
    "init-depth": Statement("bound", _FIG1 + " (here at initialisation, exact kernels)", -1.0, group=G_FIG1),
    "coupling-init-width": Statement("rate", _INIT, -1.0, group=G_INIT),
    "coupling-init-depth": Statement("bound", _INIT + ", uniformly in L (no growth with depth)", 0.0, group=G_INIT),
    "coupling-step1-width": Statement("persists", _SURVIVES, reading="message", group=G_SURV),
    "coupling-acc-width": Statement("persists", _SURVIVES + " (accumulated over blocks)", reading="coherent",
                                    group=G_SURV),
    "coupling-step1-depth": Statement("bound", _O_L2, -2.0, reading="message", group=G_L2),
    "coupling-step1-depth-stream": Statement("bound", _O_L2, -2.0, reading="stream", group=G_L2),
    "coupling-train-depth": Statement("bound", _O_L2, -2.0, reading="message", group=G_L2),
    "coupling-train-depth-stream": Statement("bound", _O_L2, -2.0, reading="stream", group=G_L2),
    "coupling-acc-depth": Statement("vanishes", _NEGLIGIBLE, reading="coherent", group=G_ACC),
    "fg-eigmin-width": Statement("persists", "Fig. 3: the feature–gradient covariance stays non-degenerate during "
                                             "training, uniformly in width", group=G_FIG3),
    "train-limit-full": Statement("bound", _FIG1, -1.0, group=G_FIG1),
    "train-limit-none": Statement("bound", _FIG1 + " (decoupled: coupling none)", -1.0, group=G_FIG1),
    "train-limit-width-full": Statement("rate", _FLOOR, -0.5, group=G_FLOOR),
    "train-limit-width-none": Statement("rate", _FLOOR, -0.5, group=G_FLOOR),
    "gia-depth-mup": Statement("vanishes", _FIG2 + " (depth-μP, minibatch SGD)", group=G_FIG2),
    "gia-mup": Statement("contrast", _FIG2 + ": under width-only μP the gap shrinks less with depth than under "
                                             "depth-μP", 1.0, against=_DM, group=G_FIG2),
    "gia-plain": Statement("contrast", _FIG2 + ": in a plain deep net the gap shrinks less with depth than under "
                                               "depth-μP", 1.0, against=_DM, group=G_FIG2),
    "gia-fullbatch-depth-mup": Statement("vanishes", _FIG2 + " (depth-μP, full batch)", group=G_FIG2),
    "gia-digits-depth-mup": Statement("vanishes", _FIG2 + " (depth-μP, digits images)", group=G_FIG2),
    "gia-digits-mup": Statement("contrast", _FIG2 + ": on digits images, under μP the gap shrinks less with depth "
                                                    "than under depth-μP", 1.0,
                                against={"setting": "depth-mup task=digits", "usable": True}, group=G_FIG2),
    "gia-limit": Statement("vanishes", _FIG2 + " (in the limit: coupling full vs none)", group=G_FIG2),
    "gia-limit-xent": Statement("vanishes", _FIG2 + " (in the limit, digits with cross-entropy)", group=G_FIG2),
    "blocks-amove": Statement("vanishes", _BLOCKS + " (α = 0)", group=G_BLOCKS),
    "blocks-limit-alpha0": Statement("vanishes", _BLOCKS + " (α = 0, in the limit)", group=G_BLOCKS),
    "blocks-limit-alpha1": Statement("contrast", _BLOCKS + ": the correction α = 1 keeps a_move growing faster "
                                                           "with K than α = 0 (in the limit)", 1.0,
                                     against={"alpha": 0.0}, group=G_BLOCKS),
    "blocks-alearn": Statement("rate", _COLLAPSE + " (α = 0)", -1.0, group=G_BLOCKS),
    "blocks-alearn-alpha-half": Statement("persists", _CORRECTED, group=G_BLOCKS),
    "blocks-alearn-alpha1": Statement("contrast", _OVER, 1.0, against={"alpha": 0.5}, group=G_BLOCKS),
    "blocks-alearn-digits": Statement("rate", _COLLAPSE + " (α = 0, digits images, cross-entropy)", -1.0,
                                      group=G_BLOCKS),
    "blocks-alearn-digits-alpha-half": Statement("persists", _CORRECTED + " (digits images, cross-entropy)",
                                                 group=G_BLOCKS),
    "blocks-loss-alpha-half": Statement("bound", "arXiv 2512.21075v1: the depth-aware inner rate lowers training "
                                                 "and test loss in deeper nets (a log loss ratio ≤ 0)", 0.0,
                                        group=G_BLOCKS, shown="range (≤ 0: the corrected loss no higher)"),
    "blocks-limit-alearn-alpha0": Statement("rate", _COLLAPSE + " (α = 0, in the limit)", -1.0, group=G_BLOCKS),
    "blocks-limit-alearn-alpha-half": Statement("persists", _CORRECTED + " (in the limit)", group=G_BLOCKS),
    "blocks-limit-alearn-alpha1": Statement("contrast", _OVER + " (in the limit)", 1.0, against={"alpha": 0.5},
                                            group=G_BLOCKS),
    "lr-transfer": Statement("rate", _TRANSFER + ": the best learning rate does not move with depth (unlike "
                                                 "width-only μP)", 0.0, group=G_LR),
}
