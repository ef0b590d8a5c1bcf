"""One recipe per model (issue 17, item 4): notebook 04 and notebook 08's MIND adapter read the same one."""

from __future__ import annotations

from pathlib import Path

from musicrecall.models import recipes
from musicrecall.models.mind import MINDConfig
from musicrecall.report.runner import notebook_parameters

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_notebook_04_takes_every_mind_default_from_the_recipe():
    params = notebook_parameters(NOTEBOOKS / "04_multi_interest_mind.ipynb")
    for field in recipes.MIND.as_dict():
        assert params.get(field) == f"mind_recipe.{field}", f"notebook 04 sets {field} = {params.get(field)}"


def test_the_mind_recipe_builds_the_model_config_and_training_arguments():
    r = recipes.MIND.with_(dim=8, per_user=3)
    cfg = r.config(routing_axis="sequence", routing_init="redraw", k_max=1)
    assert cfg == MINDConfig(dim=8, k_max=1, max_len=r.max_len, pow_p=r.pow_p, sigma=r.sigma,
                             routing_axis="sequence", routing_init="redraw")
    assert r.fit_args() == {"per_user": 3, "batch_size": r.batch_size, "n_neg": r.n_neg, "valid_users": r.valid_users,
                            "resample": r.resample}
    tc = r.train_config(seed=2)
    assert (tc.epochs, tc.lr, tc.patience, tc.seed, tc.progress) == (r.max_epochs, r.lr, r.patience, 2, False)
