"""Pure builders: InContextCache spec -> child manifests (dicts), one module per part."""
