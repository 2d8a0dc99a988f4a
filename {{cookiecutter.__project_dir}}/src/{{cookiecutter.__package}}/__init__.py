"""{{ cookiecutter.description }}."""

__version__ = "0.1.0"


class ConfigError(ValueError):
    """A problem the user can fix: the message says what was wrong and what to do."""


def require_positive(owner: object, **values: float) -> None:
    """Refuse a zero or negative hyperparameter before any training starts."""
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(
                f"{type(owner).__name__}: {name} must be greater than 0, got {value!r}; "
                f"set a positive {name} in the config or on the command line"
            )


def require_probability(owner: object, **values: float) -> None:
    """Refuse a dropout rate (or any other probability of dropping) outside [0, 1)."""
    for name, value in values.items():
        if not 0 <= value < 1:
            raise ConfigError(f"{type(owner).__name__}: {name} must be in [0, 1), got {value!r}")
