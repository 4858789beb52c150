"""The composition root: what one `dubbing serve` process runs (`roles`), how work reaches the processes that
run stages (`backends`), and everything started at start-up and stopped at shutdown (`lifespan`), built into
one `Services` object that the routes and the stage loop are given. Nothing below imports from here."""
