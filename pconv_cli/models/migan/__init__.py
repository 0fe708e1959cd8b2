"""MI-GAN (Sargsyan et al., "MI-GAN: A Simple Baseline for Image Inpainting on Mobile
Devices", ICCV 2023) as pconv family ``migan``: everything the family owns.

- :mod:`.network`: the generator, MI-GAN's module names, fully convolutional;
- :mod:`.pipeline`: MI-GAN's own inference steps (``scripts/demo.py``, windows as its
  ONNX pipeline places them);
- :mod:`.model`: the config, the builder (``register_model``), the help text;
- :mod:`.convert`: the converter of the published ``.pt`` files; :mod:`.zoo`: the zoo
  entries; :mod:`.cli`: help text; :mod:`.family`: registers it all.

Inference only.
"""
