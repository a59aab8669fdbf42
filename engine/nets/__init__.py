"""Networks that several methods share (nn.Modules built from typed configs). No training or sampling logic
here; a network only one method uses lives in that method's folder. Each is imported from its own module
(`nets.denoiser`), not from here, so that a method that shares none (P-PII) does not load diffusers."""
