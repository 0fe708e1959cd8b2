"""The DeepFillv2 family's words and options in the commands' help (torch-free)."""

from pconv_cli.models.families import FamilyCli, FamilyOption

CLI = FamilyCli(
    label="DeepFillv2",
    families={"deepfillv2": "DeepFillv2 (gated convolutions, contextual attention)"},
    stages="1 only",
    presets={"demo": "quarter width, 96 px, 400 steps"},
    defaults="1000000 steps at lr 1e-4",
    finetune="lr 1e-4, both nets",
    options=(
        FamilyOption(
            name="width", flags=("--width",), type=float, key="model.width", finetune=False,
            positive=True,
            help="Channel multiplier. [default: 1.0]",
        ),
    ),
)
