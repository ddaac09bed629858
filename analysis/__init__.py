"""The paper's analyses of a trained DCGAN: latent walks, vector arithmetic, D-feature
classification, a memorisation check and guided-backprop feature visualisation."""
