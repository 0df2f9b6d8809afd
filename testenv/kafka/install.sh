#!/bin/sh
# install.sh DIR — puts the jars of the Kafka broker that testenv.StartKafka runs (pom.xml beside
# this script: org.apache.kafka:kafka_2.13 and its runtime dependencies) into DIR/lib, from Maven
# Central through mvn. It does nothing when DIR/.installed holds the pom's hash, so `make test`
# can run it every time; anything missing (mvn, java, a jar) makes it fail with a message. The
# class archives that testenv makes in DIR/cds are for the old jars: a new install removes them.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: install.sh DIR}
pom="$here/pom.xml"

hash=$(sha256sum "$pom" | cut -d' ' -f1)
if [ -f "$dir/.installed" ] && [ "$(cat "$dir/.installed")" = "$hash" ] && ls "$dir"/lib/kafka_2.13-*.jar >/dev/null 2>&1; then
	exit 0
fi

for tool in mvn java; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "install.sh: $tool is not on PATH; the Kafka integration tests need it (Java 17+ and Maven 3)" >&2
		exit 1
	fi
done

echo "installing the Kafka broker jars into $dir/lib (mvn, from $pom)" >&2
mkdir -p "$dir"
rm -rf "$dir/lib.new" "$dir/.installed" "$dir/cds"
if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$(cd "$dir" && pwd)/lib.new"; then
	echo "install.sh: mvn could not fetch the Kafka broker's jars (see above)" >&2
	exit 1
fi
if ! ls "$dir"/lib.new/kafka_2.13-*.jar >/dev/null 2>&1; then
	echo "install.sh: mvn ran but $dir/lib.new has no kafka_2.13 jar" >&2
	exit 1
fi
rm -rf "$dir/lib"
mv "$dir/lib.new" "$dir/lib"
echo "$hash" >"$dir/.installed"
