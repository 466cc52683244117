from destination_mistral.run import run

run()
