"""SunnerLi's P-Conv's words in the commands' help (torch-free)."""

from pconv_cli.models.families import FamilyCli

HELP = (
    "SunnerLi's P-Conv (github.com/SunnerLi/P-Conv, 2018; weights sunnerli-pconv-places365 "
    "and others): his partial-conv U-Net and plain U-Net, inference only, run as his test.py "
    "runs them (every image resized to 256x256 and back, his raw output in the holes)."
)
"""What ``pconv`` says about the family (command help, model listings)."""

CLI = FamilyCli(
    label="SunnerLi's P-Conv",
    families={
        "sunnerli_pconv": "SunnerLi's partial-conv U-Net, inference only",
        "sunnerli_unet": "SunnerLi's plain U-Net, inference only",
    },
    defaults="inference only",
)
