"""Day -> dusk video translation: data splits, the Reinhard colour-transfer baseline, edge maps and the evaluation."""
