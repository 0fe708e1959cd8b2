"""The PConv U-Net family's words and options in the commands' help (torch-free)."""

from pconv_cli.models.families import FamilyCli, FamilyOption


def _loss(term: str, what: str, default: str) -> FamilyOption:
    return FamilyOption(
        name=f"loss_{term}", flags=(f"--loss-{term}",), type=float, key=f"loss.{term}",
        panel="loss", minimum=0.0, help=f"Weight of {what}. [default: {default}]",
    )  # fmt: skip


CLI = FamilyCli(
    label="PConv U-Net",
    families={
        "pconv_unet": "the PConv U-Net (alias pconv)",
        "unet": "the same U-Net with plain convolutions",
    },
    stages="1 from scratch (lr 2e-4); 2 fine-tunes --init, or the newest stage-1 checkpoint "
    "in --out, with lr 5e-5 and the encoder's BN frozen; 3 fine-tunes further (from --init "
    "or OUT/stage2; the default model's recipe)",
    presets={
        "demo": "128 px, 400 steps, no VGG",
        "default-model": "the recipe of the bundled model (then --stage 2 with the same --out)",
    },
    defaults="800000 steps at lr 2e-4 (stage 1), 500000 at 5e-5 (stage 2 and finetune)",
    finetune="stage 2 (lr 5e-5, encoder BN frozen)",
    options=(
        FamilyOption(
            name="layers", flags=("--layers",), type=int, key="model.layers", minimum=1, maximum=8,
            finetune=False,
            help="U-Net levels: 7 = MMagic's 256 px net, 8 = the paper's 512 px net. "
            "[default: 7]",
        ),
        FamilyOption(
            name="width", flags=("--width",), type=float, key="model.width", finetune=False,
            positive=True,
            help="Channel multiplier. [default: 1.0]",
        ),
        FamilyOption(
            name="vgg_weights", flags=("--vgg-weights",), type=str, key="vgg_weights",
            panel="loss", metavar="[imagenet|none|FILE]",
            help="Perceptual/style losses: torchvision's ImageNet VGG16 (hub cache), a local "
            "VGG16 state dict, or none. [default: imagenet]",
        ),
        _loss("valid", "L1 on valid pixels", "1"),
        _loss("hole", "L1 on holes", "6"),
        _loss("perceptual", "the perceptual loss", "0.05"),
        _loss("style", "the style loss", "120"),
        _loss("tv", "total variation", "0.1"),
        FamilyOption(
            name="freeze_encoder", flags=("--freeze-encoder/--no-freeze-encoder",), type=bool,
            key="freeze_encoder", panel="loss", flag=True,
            help="Freeze the whole encoder, not only its BN.",
        ),
    ),
)
