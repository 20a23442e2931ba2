"""The paper's theory as code (Sec. 2, App. A-C): definitions, lemmas, theorems and bounds.

A package split along the paper; ``from trs_lib import theory; theory.<name>`` reaches every
public name of every part:

* :mod:`.definitions` -- **Definitions 1-8** (Sec. 2.1-2.2.1, App. A): the attack model, attack
  effectiveness, transferability, lower/upper loss-gradient similarity, smoothness, total
  variation and rho-conservative attacks; the TRS formula of Sec. 3 read literally and as a cosine.
* :mod:`.bounds` -- **Lemmas 3, 5, 6, Theorem 4** (App. A-C) and **Theorems 1 and 2** (Sec.
  2.2.2-2.2.3, App. B-C): the lower and upper bounds, untargeted and targeted, as functions of
  their terms ``(alpha, eta_F, eta_G, epsilon, c_F, c_G, S, beta, B, xi_F, xi_G, l_min)`` and the
  terms ``c_F, c_G, l_min`` computed from losses.
* :mod:`.estimators` -- **estimators for networks** (``nn.Module`` returning logits): sampled
  similarities, the smoothness ``beta`` by Hessian-vector power iteration, the gradient bound
  ``B``, every term of the theorems for an attack; small smooth-activation CNNs.
* :mod:`.exact` -- closed forms for linear softmax models (every term exact), the exact
  distributions of the validity searches and the main-text Theorem 1 counterexample.
* :mod:`.validity` -- searches for violations of the bounds where they are informative.
* :mod:`.checks` -- ``check_table`` (the pass/fail table ending each theory notebook) and
  ``findings()`` (the chapter's verdicts, read by the book's dashboard).

Conventions. ``l_F(x, y)`` is the cross-entropy of model ``F`` (the paper's "model-dependent
loss"); a model predicts the label of smallest loss, i.e. the arg-max of its logits.
Probabilities ``Pr`` are over ``x ~ P_x``; on a finite sample they are sample means, and on a
finite *support* (the toy models of the theory chapter) they are exact. Where the paper's
statement and its proof disagree, the bound functions follow the proof; ``book/errata.md``
lists each case with the check that shows it.
"""
from . import bounds, checks, definitions, estimators, exact, validity
from .bounds import *  # noqa: F401,F403
from .bounds import __all__ as _bounds_all
from .checks import *  # noqa: F401,F403
from .checks import __all__ as _checks_all
from .definitions import *  # noqa: F401,F403
from .definitions import __all__ as _definitions_all
from .estimators import *  # noqa: F401,F403
from .estimators import __all__ as _estimators_all
from .exact import *  # noqa: F401,F403
from .exact import __all__ as _exact_all
from .validity import *  # noqa: F401,F403
from .validity import __all__ as _validity_all

__all__ = [*_definitions_all, *_bounds_all, *_estimators_all, *_exact_all, *_validity_all,
           *_checks_all]
