"""The shared epsilon-prediction VP denoiser: one trained network that the `sano` and `spr` read-outs
(and DIA's dissolving transformation) use. Not a method itself: `sano` and `spr` register it."""
