"""The bundled sample outlet and `archiver demo`."""
