"""LaMa's words in the commands' help (torch-free)."""

from pconv_cli.models.families import FamilyCli

CLI = FamilyCli(
    label="LaMa",
    families={"lama": "LaMa's FFC ResNet generator (Fourier convolutions)"},
    stages="1 LaMa's recipe from scratch (lr 1e-3, discriminator at a tenth); 2 continues "
    "--init (e.g. big-lama) at lr 1e-4",
    presets={"demo": "a narrow net at 64 px, 300 steps, no ResNetPL"},
    defaults="1000000 steps at lr 1e-3 (stage 1), 20000 at 1e-4 (stage 2 and finetune)",
    finetune="stage 2 (lr 1e-4, both nets; --loss resnet_pl=0 offline)",
)
