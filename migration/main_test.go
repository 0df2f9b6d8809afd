package migration_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tandemdb/tandem/testenv"
)

var client *mongo.Client

func TestMain(m *testing.M) { testenv.MongoMain(m, &client) }
