import ArgumentParser
import Kiln

struct KilnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kiln", abstract: "Kiln: define-then-run networks compiled ahead of time.")
}
KilnCommand.main()
