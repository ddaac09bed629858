"""Training recipes: the paper's exact settings, and the measured remedies for `shapes`.

A recipe fills every training knob the user did not set. `paper` is Radford et al.'s: Adam
2e-4, beta1 0.5, batch 128, no remedies. `shapes` is what learned the built-in data best in the
measurements of benchmarks/results/training_recipe.md (every arm, seed and score is there);
its differentiable translation won on every seed at 2,400 and at 6,000 steps (rounds 6 and 7).
`auto` picks `shapes` on shapes data and `paper` elsewhere.
"""

from __future__ import annotations

RECIPES = {
    "paper": {"batch_size": 128, "lr": 2e-4, "lr_d": None, "beta1": 0.5, "beta2": 0.999,
              "label_smoothing": 0.0, "instance_noise": 0.0, "instance_noise_floor": 0.0,
              "instance_noise_steps": 0, "r1_gamma": 0.0, "r1_every": 16, "ema": 0.0,
              "anneal_from": 1.0, "augment": ""},
    "shapes": {"batch_size": 64, "lr": 4e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999,
               "label_smoothing": 0.1, "instance_noise": 0.1, "instance_noise_floor": 0.05,
               "instance_noise_steps": 6000, "r1_gamma": 0.0, "r1_every": 16, "ema": 0.999,
               "anneal_from": 0.5, "augment": "translation"},
}
RECIPE_NAMES = ("auto", *RECIPES)
RECIPE_SETTINGS = tuple(RECIPES["paper"])  # the knobs a recipe sets


def resolve_recipe(name: str, data: str) -> str:
    """The recipe `auto` stands for on `data`; other names stand for themselves."""
    if name not in RECIPE_NAMES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPE_NAMES)}, got {name!r}")
    if name == "auto":
        return "shapes" if data == "shapes" or data.startswith("shapes:") else "paper"
    return name


def recipe_settings(name: str, data: str, overrides: dict) -> tuple[str, dict]:
    """(resolved recipe name, every knob): the recipe's values, with `overrides` (not None) on top."""
    resolved = resolve_recipe(name, data)
    settings = dict(RECIPES[resolved])
    settings.update({k: v for k, v in overrides.items() if v is not None and k in settings})
    return resolved, settings
