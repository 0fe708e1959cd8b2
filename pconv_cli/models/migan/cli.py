"""MI-GAN's words in the commands' help (torch-free)."""

from pconv_cli.models.families import FamilyCli

HELP = (
    "MI-GAN (Sargsyan et al., ICCV 2023; weights migan-512-places2, migan-256-places2, "
    "migan-256-ffhq): inference only. Images up to the generator's resolution (512 or 256) "
    "are resized to it and back as MI-GAN's demo.py does; larger ones get one working "
    "window of at least that size around each hole."
)
"""What ``pconv`` says about the family (command help, model listings)."""

CLI = FamilyCli(
    label="MI-GAN", families={"migan": "MI-GAN 256/512, inference only"}, defaults="inference only"
)
