"""GANs on the smoothrl stack (thesis Sections 4.6 and 7.4): generator and discriminator networks (`networks`), the
saturating and non-saturating losses (`losses`), the training step with SN, DIVOUT, DIVGRAD or MULEPS on the
discriminator and simultaneous or alternating updates (`trainer`), what a step logs (`diagnostics`), data
(`data`, `mixtures`) and sample-quality proxies (`metrics`, `classifier`). Import the submodules directly."""
