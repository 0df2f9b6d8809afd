#!/bin/sh
# install.sh DIR — puts mongo-java-server (pom.xml beside this script: the server, its H2 backend,
# slf4j-simple and their runtime dependencies) into DIR/lib from Maven Central through mvn, and
# compiles the launcher (Launcher.java beside this script) with javac into DIR/classes. It does
# nothing when DIR/.installed holds the hash of the pom and the launcher, so `make test` can run it
# every time; anything missing (mvn, javac, a jar) makes it fail with a message.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: install.sh DIR}
pom="$here/pom.xml"
src="$here/Launcher.java"

hash=$(cat "$pom" "$src" | sha256sum | cut -d' ' -f1)
if [ -f "$dir/.installed" ] && [ "$(cat "$dir/.installed")" = "$hash" ] &&
	ls "$dir"/lib/mongo-java-server-core-*.jar >/dev/null 2>&1 && [ -f "$dir/classes/tandem/testenv/Launcher.class" ]; then
	exit 0
fi

for tool in mvn java javac; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "install.sh: $tool is not on PATH; the change-stream tests need it (Java 17+ with javac, and Maven 3)" >&2
		exit 1
	fi
done

echo "installing mongo-java-server into $dir (mvn, from $pom; javac $src)" >&2
mkdir -p "$dir"
abs=$(cd "$dir" && pwd)
rm -rf "$abs/lib.new" "$abs/classes.new" "$abs/.installed"
if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$abs/lib.new"; then
	echo "install.sh: mvn could not fetch mongo-java-server's jars (see above)" >&2
	exit 1
fi
if ! ls "$abs"/lib.new/mongo-java-server-core-*.jar >/dev/null 2>&1; then
	echo "install.sh: mvn ran but $abs/lib.new has no mongo-java-server-core jar" >&2
	exit 1
fi
mkdir -p "$abs/classes.new"
if ! javac --release 17 -nowarn -d "$abs/classes.new" -cp "$abs/lib.new/*" "$src"; then
	echo "install.sh: javac could not compile $src (see above)" >&2
	exit 1
fi
rm -rf "$abs/lib" "$abs/classes"
mv "$abs/lib.new" "$abs/lib"
mv "$abs/classes.new" "$abs/classes"
echo "$hash" >"$abs/.installed"
