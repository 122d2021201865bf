"""Raw talking-face videos -> auto_avsr layout (96x96 mouth crops at 25 fps, 16 kHz mono wav, label CSV)."""
