"""`python -m cadsynth.cli`: the same as the `cads` console script."""

from cadsynth.cli import main

if __name__ == "__main__":
    main()
