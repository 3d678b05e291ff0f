"""`sdc serve`: a digit-recognition HTTP service with a web page (the optional `sdc[serve]` extra).

`app` builds the FastAPI application around one loaded `Recognizer`, `uploads` turns a request
body into a waveform, `pool` bounds how much inference runs and waits at once, `page/` is the
browser page served at `/`, and `main` is the command line.
"""
