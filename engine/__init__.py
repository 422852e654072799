"""Neural style transfer engine (Gatys et al.) on VGG19 with TensorFlow. Knows nothing of Telegram."""
