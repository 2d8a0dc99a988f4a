"""`python -m {{ cookiecutter.__package }} fit --config configs/<task>.yaml`: see cli.py."""

from .cli import main

if __name__ == "__main__":
    main()
